package cron

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Every node schedules every job, and each scheduled time is fired by one
// of them: three nodes ticking the same minutes spawn one run a minute.
// When a node goes, the others go on firing. Config jobs of one name are
// one job; nodes that define it differently are reported, and it still
// fires once.
func TestOncePerCluster(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	nightly := Def{Name: "nightly", Schedule: "* * * * *", Zone: "UTC", Enabled: true, Overlap: "allow", Spec: sleeper("0")}
	other := nightly
	other.Schedule = "*/2 * * * *"
	n1, r1 := w.openAs("n1", nightly)
	n2, r2 := w.openAs("n2", nightly)
	n3, r3 := w.openAs("n3", other)
	if _, err := n2.Create(ctx, Def{Name: "tick", Schedule: "@every 1m", Overlap: "allow", Enabled: true, Spec: sleeper("0")}); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, n1, 2)
	runners := []*Runner{r1, r2, r3}
	for range 3 {
		now := w.advance(time.Minute)
		for _, r := range runners {
			r.Tick(ctx, now)
		}
	}
	if n := len(w.events("cron.fired")); n != 6 {
		t.Fatalf("%d cron.fired for two jobs over three minutes on three nodes, want 6", n)
	}
	jobs := n1.List()
	if len(jobs) != 2 {
		t.Fatalf("jobs listed: %+v", jobs)
	}
	j, _ := n3.Get("nightly")
	if j.Node != "n1" || !strings.Contains(j.Error, "define cron job nightly differently") {
		t.Fatalf("the conflict is not reported: %+v", j)
	}
	if runs := countRuns(j.Recent); runs != 3 {
		t.Fatalf("nightly's recent runs: %d (%+v)", runs, j.Recent)
	}

	// n2, which created tick, goes: n1 and n3 fire its next times.
	n2.Close()
	runners = []*Runner{r1, r3}
	for range 2 {
		now := w.advance(time.Minute)
		for _, r := range runners {
			r.Tick(ctx, now)
		}
	}
	if n := len(w.events("cron.fired")); n != 10 {
		t.Fatalf("%d cron.fired after n2 left, want 10", n)
	}
}

func countRuns(fs []Fired) int {
	n := 0
	for _, f := range fs {
		if f.Action == "run" {
			n++
		}
	}
	return n
}

// waitJobs waits until s lists n jobs (the others' come by a watch).
func waitJobs(t *testing.T, s *Service, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.List()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("listed %+v, want %d jobs", s.List(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
