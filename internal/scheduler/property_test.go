package scheduler

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// A model of what the supervisor does with the scheduler, driven at
// random: spawns (a new id), sub-agent fan-outs (a parent that holds a
// slot releases it once and submits one reacquire ticket per sub-agent,
// which the old code counted once each), kills of queued agents (Cancel)
// and ends (Release). After every step no limit is exceeded and the counts
// match who holds a slot; after everything has ended every count is 0.
func TestRandomMixesReturnEveryCountToZero(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomMix(t, seed) })
	}
}

func randomMix(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	lim := Limits{MaxRunning: 1 + rng.IntN(6), MaxRunningLLM: 1 + rng.IntN(4)}
	s := New(lim)
	defer s.Close()
	var mu sync.Mutex
	started := map[string]int{} // id -> Start calls not yet matched by an end
	llmOf := map[string]bool{}
	ticket := func(id string, llm bool) Ticket {
		return Ticket{ID: id, LLM: llm, Priority: Priority(rng.IntN(4)), Start: func() {
			mu.Lock()
			started[id]++
			mu.Unlock()
		}}
	}
	check := func(step int) {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		llm := 0
		for _, isLLM := range s.holders {
			if isLLM {
				llm++
			}
		}
		if llm != s.llm {
			t.Fatalf("step %d: llm count %d, but %d llm holders", step, s.llm, llm)
		}
		if len(s.holders) > lim.MaxRunning || s.llm > lim.MaxRunningLLM {
			t.Fatalf("step %d: %d running (limit %d), %d llm (limit %d)", step, len(s.holders), lim.MaxRunning, s.llm, lim.MaxRunningLLM)
		}
	}
	n := 0
	holders := func() []string {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ids []string
		for id := range s.holders {
			ids = append(ids, id)
		}
		return ids
	}
	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 4: // spawn
			n++
			id := fmt.Sprintf("a%d", n)
			llmOf[id] = rng.IntN(2) == 0
			s.Submit(ticket(id, llmOf[id]))
		case op < 6: // a holder fans out k sub-agents and takes its slot back k times
			if hs := holders(); len(hs) > 0 {
				parent := hs[rng.IntN(len(hs))]
				s.Release(parent)
				for range 1 + rng.IntN(5) {
					s.Submit(ticket(parent, llmOf[parent]))
				}
			}
		case op < 8: // an end
			if hs := holders(); len(hs) > 0 {
				s.Release(hs[rng.IntN(len(hs))])
			}
		default: // a kill of whatever is queued
			if n > 0 {
				s.Cancel(fmt.Sprintf("a%d", 1+rng.IntN(n)))
			}
		}
		check(step)
	}
	// Everything ends: holders release, the queue is cancelled or admitted
	// and released in turn.
	for range 10000 {
		hs := holders()
		snap := s.Snapshot()
		if len(hs) == 0 && snap.QueuedTotal == 0 {
			break
		}
		for _, id := range hs {
			s.Release(id)
		}
		check(-1)
	}
	snap := s.Snapshot()
	if snap.Running != 0 || snap.RunningLLM != 0 || snap.QueuedTotal != 0 {
		t.Fatalf("at the end: running %d, running_llm %d, queued %d", snap.Running, snap.RunningLLM, snap.QueuedTotal)
	}
}
