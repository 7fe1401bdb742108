package cron

import (
	"testing"
	"time"
)

func TestOverlapPolicies(t *testing.T) {
	for _, c := range []struct {
		p      Overlap
		active int
		queued bool
		want   Action
	}{
		{OverlapSkip, 0, false, Run},
		{OverlapSkip, 1, false, Skip},
		{OverlapQueue, 1, false, Queue},
		{OverlapQueue, 1, true, Skip},
		{OverlapQueue, 0, true, Run},
		{OverlapAllow, 3, false, Run},
	} {
		if got := OnFire(c.p, c.active, c.queued); got != c.want {
			t.Errorf("%s with %d active (queued %v): %s, want %s", c.p, c.active, c.queued, got, c.want)
		}
	}
	if _, err := ParseOverlap("sometimes"); err == nil {
		t.Error("a bad overlap policy was accepted")
	}
	if _, err := ParseMissed("twice"); err == nil {
		t.Error("a bad missed-run policy was accepted")
	}
}

// A daemon down from 10:05 to 13:20 missed the 11:00, 12:00 and 13:00 runs
// of an hourly job: run-once fires once at boot, skip does not; both go on
// at 14:00. A job that never ran has nothing to catch up.
func TestMissedRunsAfterDowntime(t *testing.T) {
	s := mustParse(t, "0 * * * *", "UTC")
	last := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	now := time.Date(2026, 11, 25, 13, 20, 0, 0, time.UTC)
	next := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	fire, missed, n := CatchUp(s, last, now, MissedRunOnce)
	if !fire || missed != 3 || !n.Equal(next) {
		t.Fatalf("run-once: fire %v missed %d next %s", fire, missed, n)
	}
	fire, missed, n = CatchUp(s, last, now, MissedSkip)
	if fire || missed != 3 || !n.Equal(next) {
		t.Fatalf("skip: fire %v missed %d next %s", fire, missed, n)
	}
	if fire, missed, _ := CatchUp(s, time.Time{}, now, MissedRunOnce); fire || missed != 0 {
		t.Fatalf("never ran: fire %v missed %d", fire, missed)
	}
	// Not down long enough to miss anything.
	if fire, missed, _ := CatchUp(s, last, time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC), MissedRunOnce); fire || missed != 0 {
		t.Fatalf("no downtime: fire %v missed %d", fire, missed)
	}
	// @every counts its intervals.
	e := mustParse(t, "@every 30s", "UTC")
	if _, missed, n := CatchUp(e, last, last.Add(5*time.Minute+10*time.Second), MissedSkip); missed != 10 || !n.Equal(last.Add(5*time.Minute+30*time.Second)) {
		t.Fatalf("@every 30s over 5m10s: %d missed, next %s (want its rhythm kept)", missed, n)
	}
}
