package scheduler

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// recorder collects the order in which tickets start.
type recorder struct {
	mu      sync.Mutex
	started []string
	ch      chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1000)} }

func (r *recorder) ticket(id string, p Priority, llm bool) Ticket {
	return Ticket{ID: id, Priority: p, LLM: llm, Start: func() {
		r.mu.Lock()
		r.started = append(r.started, id)
		r.mu.Unlock()
		r.ch <- id
	}}
}

func (r *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case id := <-r.ch:
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("no ticket started")
		return ""
	}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case id := <-r.ch:
		t.Fatalf("%s started past the limits", id)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestPriorityThenFIFO(t *testing.T) {
	s := New(Limits{MaxRunning: 1, MaxRunningLLM: 1})
	defer s.Close()
	r := newRecorder()
	s.Submit(r.ticket("first", Low, false)) // takes the only slot
	if got := r.next(t); got != "first" {
		t.Fatal(got)
	}
	for i, p := range []Priority{Low, Normal, Critical, High, Normal, Critical} {
		s.Submit(r.ticket(fmt.Sprintf("%s-%d", p, i), p, false))
	}
	pos := s.Positions()
	if pos["critical-2"] != 1 || pos["critical-5"] != 2 || pos["high-3"] != 3 || pos["low-0"] != 6 {
		t.Fatalf("positions %v", pos)
	}
	snap := s.Snapshot()
	if snap.Running != 1 || snap.QueuedTotal != 6 || snap.Queued[0].Priority != "critical" || len(snap.Queued[0].IDs) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	want := []string{"critical-2", "critical-5", "high-3", "normal-1", "normal-4", "low-0"}
	prev := "first"
	for _, w := range want {
		r.none(t)
		s.Release(prev)
		if got := r.next(t); got != w {
			t.Fatalf("started %s, want %s", got, w)
		}
		prev = w
	}
}

func TestCancelLeavesTheQueue(t *testing.T) {
	s := New(Limits{MaxRunning: 1, MaxRunningLLM: 1})
	defer s.Close()
	r := newRecorder()
	s.Submit(r.ticket("a", Normal, false))
	r.next(t)
	s.Submit(r.ticket("b", Normal, false))
	s.Submit(r.ticket("c", Normal, false))
	if !s.Cancel("b") || s.Cancel("b") || s.Cancel("a") {
		t.Fatal("cancel reports wrongly")
	}
	if pos := s.Positions(); pos["c"] != 1 || len(pos) != 1 {
		t.Fatalf("positions %v", pos)
	}
	s.Release("a")
	if got := r.next(t); got != "c" {
		t.Fatal(got)
	}
}

// A language-model ticket waiting for an LLM slot does not block process
// tickets queued behind it.
func TestLLMLimit(t *testing.T) {
	s := New(Limits{MaxRunning: 10, MaxRunningLLM: 1})
	defer s.Close()
	r := newRecorder()
	s.Submit(r.ticket("llm1", Normal, true))
	r.next(t)
	s.Submit(r.ticket("llm2", High, true))
	s.Submit(r.ticket("proc", Normal, false))
	if got := r.next(t); got != "proc" {
		t.Fatal(got)
	}
	r.none(t)
	s.Release("llm1")
	if got := r.next(t); got != "llm2" {
		t.Fatal(got)
	}
	if snap := s.Snapshot(); snap.RunningLLM != 1 || snap.Running != 2 {
		t.Fatalf("%+v", snap)
	}
}

func TestRateLimit(t *testing.T) {
	s := New(Limits{MaxRunning: 100, MaxRunningLLM: 1, SpawnsPerMinute: 2})
	defer s.Close()
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := newRecorder()
	for _, id := range []string{"a", "b", "c"} {
		s.Submit(r.ticket(id, Normal, false))
	}
	r.next(t)
	r.next(t)
	r.none(t)
	// Still inside the window: a release frees a slot, not a start.
	s.Release("a")
	r.none(t)
	mu.Lock()
	now = now.Add(window)
	mu.Unlock()
	s.wake() // what the timer does
	if got := r.next(t); got != "c" {
		t.Fatal(got)
	}
}

// Under many concurrent submits and releases, the running count never
// passes the limit and every ticket starts exactly once.
func TestLimitsHoldUnderConcurrency(t *testing.T) {
	const max, n = 5, 400
	s := New(Limits{MaxRunning: max, MaxRunningLLM: 2})
	defer s.Close()
	var running, llm, peak, peakLLM atomic.Int64
	var wg sync.WaitGroup
	started := make(chan string, n)
	wg.Add(n)
	for i := range n {
		go func() {
			id := fmt.Sprint(i)
			isLLM := i%3 == 0
			s.Submit(Ticket{ID: id, Priority: Priority(i % 4), LLM: isLLM, Start: func() {
				v := running.Add(1)
				raise(&peak, v)
				if isLLM {
					raise(&peakLLM, llm.Add(1))
				}
				time.Sleep(time.Millisecond) // hold the slot a while
				if isLLM {
					llm.Add(-1)
				}
				running.Add(-1)
				started <- id
				s.Release(id)
				wg.Done()
			}})
		}()
	}
	wg.Wait()
	close(started)
	var ids []string
	for id := range started {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != n {
		t.Fatalf("%d distinct starts, want %d", len(ids), n)
	}
	if peak.Load() > max || peakLLM.Load() > 2 {
		t.Fatalf("peak running %d (limit %d), llm %d (limit 2)", peak.Load(), max, peakLLM.Load())
	}
	if snap := s.Snapshot(); snap.Running != 0 || snap.QueuedTotal != 0 {
		t.Fatalf("%+v", snap)
	}
}

// raise sets peak to v if v is higher.
func raise(peak *atomic.Int64, v int64) {
	for {
		old := peak.Load()
		if v <= old || peak.CompareAndSwap(old, v) {
			return
		}
	}
}

func TestParsePriority(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Priority
		ok   bool
	}{{"", Normal, true}, {"critical", Critical, true}, {"low", Low, true}, {"urgent", Normal, false}} {
		p, err := ParsePriority(c.in)
		if p != c.want || (err == nil) != c.ok {
			t.Errorf("%q: %v %v", c.in, p, err)
		}
	}
}

// A queued ticket says which limit it waits for (issue 15.8: the 257th
// agent waited without a word).
func TestWaitingSaysWhy(t *testing.T) {
	s := New(Limits{MaxRunning: 2, MaxRunningLLM: 1})
	defer s.Close()
	r := newRecorder()
	s.Submit(r.ticket("llm1", Normal, true))
	r.next(t)
	s.Submit(r.ticket("llm2", Normal, true)) // the llm slot is taken
	r.none(t)
	if w := s.Waiting()["llm2"]; w.Position != 1 || w.Why != "1 of 1 llm agents running" {
		t.Fatalf("llm2: %+v", w)
	}
	s.Submit(r.ticket("p1", Normal, false)) // takes the last slot
	r.next(t)
	s.Submit(r.ticket("p2", Normal, false))
	r.none(t)
	w := s.Waiting()
	if w["p2"].Why != "2 of 2 running" || w["llm2"].Why != "2 of 2 running" || w["p2"].Position != 2 {
		t.Fatalf("waiting: %+v", w)
	}

	rs := New(Limits{MaxRunning: 10, MaxRunningLLM: 1, SpawnsPerMinute: 1})
	defer rs.Close()
	rs.Submit(r.ticket("a", Normal, false))
	r.next(t)
	rs.Submit(r.ticket("b", Normal, false))
	r.none(t)
	if w := rs.Waiting()["b"]; w.Why != "1 of 1 starts in the last minute" {
		t.Fatalf("rate-limited: %+v", w)
	}
}
