package cron

import (
	"fmt"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// Overlap says what a firing does while the job's previous run is active.
type Overlap string

// Overlap policies.
const (
	// OverlapSkip drops the firing (event cron.skipped).
	OverlapSkip Overlap = "skip"
	// OverlapQueue runs it once the active run ends; firings while one is
	// already queued are dropped.
	OverlapQueue Overlap = "queue"
	// OverlapAllow runs it alongside.
	OverlapAllow Overlap = "allow"
)

// ParseOverlap reads an overlap policy; "" is skip.
func ParseOverlap(s string) (Overlap, error) {
	switch Overlap(s) {
	case "":
		return OverlapSkip, nil
	case OverlapSkip, OverlapQueue, OverlapAllow:
		return Overlap(s), nil
	}
	return "", fmt.Errorf("must be skip, queue or allow (got %q)", s)
}

// Missed says what happens to firings that fell while the daemon was down.
type Missed string

// Missed-run policies.
const (
	// MissedSkip drops them; the job fires next at its next time.
	MissedSkip Missed = "skip"
	// MissedRunOnce runs the job once at boot for all of them.
	MissedRunOnce Missed = "run-once"
)

// ParseMissed reads a missed-run policy; "" is skip.
func ParseMissed(s string) (Missed, error) {
	switch Missed(s) {
	case "":
		return MissedSkip, nil
	case MissedSkip, MissedRunOnce:
		return Missed(s), nil
	}
	return "", fmt.Errorf("must be skip or run-once (got %q)", s)
}

// Action is what one firing does.
type Action = oxios.CronAction

// Actions of a firing.
const (
	Run   = oxios.CronRun
	Skip  = oxios.CronSkip
	Queue = oxios.CronQueue
)

// OnFire decides a firing, given how many of the job's runs are active and
// whether one is already queued.
func OnFire(p Overlap, active int, queued bool) Action {
	if active == 0 || p == OverlapAllow {
		return Run
	}
	if p == OverlapQueue && !queued {
		return Queue
	}
	return Skip
}

// CatchUp applies the missed-run policy at boot: given the job's last
// firing (or, if it never fired, when it was created; zero if unknown) and
// now, it reports whether to fire once now, how many firings were missed,
// and the next regular firing. An @every job keeps its rhythm from the
// last firing rather than starting over at boot.
func CatchUp(s Schedule, last, now time.Time, p Missed) (fireNow bool, missed int, next time.Time) {
	fireNow, missed, next, _ = catchUp(s, last, now, p)
	return fireNow, missed, next
}

// catchUp is CatchUp, with the last firing missed (the slot a catch-up
// firing stands for, which every node computes alike).
func catchUp(s Schedule, last, now time.Time, p Missed) (fireNow bool, missed int, next, lastMissed time.Time) {
	if last.IsZero() || last.After(now) {
		return false, 0, s.Next(now), time.Time{}
	}
	const most = 100000 // a bound for an @every 1s job down for a long time
	t := s.Next(last)
	for ; !t.IsZero() && !t.After(now) && missed < most; t = s.Next(t) {
		missed++
		lastMissed = t
	}
	if t.IsZero() || !t.After(now) {
		t = s.Next(now)
	}
	return missed > 0 && p == MissedRunOnce, missed, t, lastMissed
}
