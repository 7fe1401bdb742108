package cron

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeRuns stands in for the supervisor: runs stay active until ended.
type fakeRuns struct {
	mu     sync.Mutex
	n      int
	active map[string]bool
}

func (f *fakeRuns) fire(context.Context, Firing) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprint("run", f.n)
	f.active[id] = true
	return id, nil
}

func (f *fakeRuns) isActive(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[id]
}

func (f *fakeRuns) endAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.active)
}

func newTestRunner(t *testing.T, now time.Time) (*Runner, *[]Firing) {
	r := NewRunner()
	r.Now = func() time.Time { return now }
	var fired []Firing
	r.OnFiring = func(f Firing) { fired = append(fired, f) }
	return r, &fired
}

func actions(fs []Firing) string {
	s := ""
	for _, f := range fs {
		s += string(f.Action) + " "
	}
	return s
}

// Each overlap policy over three firings while the first run is still
// going, then the run ends.
func TestRunnerOverlap(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)
	for _, c := range []struct {
		p    Overlap
		want string
		runs int
	}{
		{OverlapSkip, "run skip skip ", 1},
		{OverlapQueue, "run queue skip run ", 2},
		{OverlapAllow, "run run run ", 3},
	} {
		t.Run(string(c.p), func(t *testing.T) {
			r, fired := newTestRunner(t, start)
			runs := &fakeRuns{active: map[string]bool{}}
			r.Put(Job{Name: "j", Schedule: mustParse(t, "* * * * *", "UTC"), Overlap: c.p, Enabled: true, Fire: runs.fire, Active: runs.isActive})
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				r.Tick(ctx, start.Add(time.Duration(i)*time.Minute))
			}
			runs.endAll()
			r.Tick(ctx, start.Add(3*time.Minute+time.Second))
			if got := actions(*fired); got != c.want || runs.n != c.runs {
				t.Fatalf("firings %q (want %q), %d runs (want %d)", got, c.want, runs.n, c.runs)
			}
		})
	}
}

// A job put back after downtime catches up by its missed-run policy; a
// disabled job does not fire; Trigger fires at once.
func TestRunnerCatchUpDisableTrigger(t *testing.T) {
	now := time.Date(2026, 11, 25, 13, 20, 0, 0, time.UTC)
	last := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	r, fired := newTestRunner(t, now)
	runs := &fakeRuns{active: map[string]bool{}}
	s := mustParse(t, "0 * * * *", "UTC")
	r.Put(Job{Name: "once", Schedule: s, Missed: MissedRunOnce, Enabled: true, Fire: runs.fire, Active: runs.isActive, LastRun: last})
	r.Put(Job{Name: "skip", Schedule: s, Missed: MissedSkip, Enabled: true, Fire: runs.fire, Active: runs.isActive, LastRun: last})
	if len(*fired) != 1 || (*fired)[0].Job != "once" || (*fired)[0].Missed != 3 {
		t.Fatalf("catch-up firings %+v", *fired)
	}
	if n, _ := r.Next("skip"); !n.Equal(time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)) {
		t.Fatalf("next of skip: %s", n)
	}
	r.Put(Job{Name: "off", Schedule: mustParse(t, "* * * * *", "UTC"), Enabled: false, Fire: runs.fire, Active: runs.isActive})
	r.Tick(context.Background(), now.Add(2*time.Minute))
	for _, f := range *fired {
		if f.Job == "off" {
			t.Fatal("a disabled job fired")
		}
	}
	f, ok := r.Trigger(context.Background(), "off")
	if !ok || f.Action != Run || f.RunID == "" {
		t.Fatalf("trigger: %+v %v", f, ok)
	}
	if _, ok := r.Trigger(context.Background(), "nope"); ok {
		t.Fatal("triggered a job that does not exist")
	}
}
