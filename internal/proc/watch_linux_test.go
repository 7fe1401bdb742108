package proc

import (
	"testing"
	"time"
)

// A group that forks past its limit is stopped however the counts are
// spared; an idle group, far from its limit, is not counted again at every
// tick.
func TestWatchGroup(t *testing.T) {
	hit := make(chan struct{}, 1)
	p, _ := start(t, "sleep 30")
	stop := watchGroup(p.PID, 1<<20, func() { hit <- struct{}{} })
	defer stop()

	before, tick0 := watchScans.Load(), watchTicks.Load()
	deadline := time.Now().Add(10 * time.Second)
	for watchTicks.Load()-tick0 < 8 {
		if time.Now().After(deadline) {
			t.Fatal("the watcher does not tick")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ticks := watchTicks.Load() - tick0
	// Other tests and the machine create tasks meanwhile, but not a
	// million of them: the idle group is counted once, when added.
	if n := watchScans.Load() - before; n > 2 {
		t.Errorf("%d counts in %d ticks for a group a million tasks from its limit", n, ticks)
	}

	bomb, _ := start(t, "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; wait")
	stopBomb := watchGroup(bomb.PID, 8, func() { hit <- struct{}{} })
	defer stopBomb()
	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatal("a group over its limit of 8 tasks was not reported")
	}
}
