// Package scheduler decides when agents start: a priority queue (critical >
// high > normal > low, first come first served within a priority) admitted
// under a limit of running agents, a separate limit of running language-model
// agents, and a limit of starts per minute. It holds no records; the
// supervisor submits tickets and releases their slots when agents end.
package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// Priority orders the queue.
type Priority int

// Priorities, lowest first.
const (
	Low Priority = iota
	Normal
	High
	Critical
)

var priorityNames = [...]string{"low", "normal", "high", "critical"}

func (p Priority) String() string {
	if p < Low || p > Critical {
		return fmt.Sprintf("priority(%d)", int(p))
	}
	return priorityNames[p]
}

// ParsePriority reads "critical", "high", "normal" or "low"; "" is normal.
func ParsePriority(s string) (Priority, error) {
	if s == "" {
		return Normal, nil
	}
	for i, n := range priorityNames {
		if n == s {
			return Priority(i), nil
		}
	}
	return Normal, fmt.Errorf("must be one of critical, high, normal, low (got %q)", s)
}

// Limits bound admission.
type Limits = oxios.SchedulerLimits

// Ticket asks for a slot.
type Ticket struct {
	ID       string
	Priority Priority
	// LLM tickets also need a language-model slot.
	LLM bool
	// Start is called, on its own goroutine, once the ticket holds a slot.
	// The slot is held until Release(ID).
	Start func()
}

// The scheduler's state, defined in package oxios.
type (
	Snapshot   = oxios.SchedulerSnapshot
	QueueLevel = oxios.QueueLevel
)

// window is how far back SpawnsPerMinute looks.
const window = time.Minute

// Scheduler admits tickets. The zero value is not usable; call New.
type Scheduler struct {
	mu      sync.Mutex
	limits  Limits
	queues  [Critical + 1][]Ticket
	holders map[string]bool // id -> holds an LLM slot
	llm     int
	starts  []time.Time // recent admissions, oldest first (rate limit)
	timer   *time.Timer // wakes dispatch when the rate window opens
	closed  bool
	now     func() time.Time
}

// New returns a scheduler with the given limits.
func New(l Limits) *Scheduler {
	return &Scheduler{limits: l, holders: map[string]bool{}, now: time.Now}
}

// SetLimits changes the limits; a raised limit admits waiting tickets at
// once, a lowered one lets running agents finish.
func (s *Scheduler) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l
	run := s.dispatchLocked()
	s.mu.Unlock()
	startAll(run)
}

// Submit queues a ticket and admits it at once if the limits allow.
func (s *Scheduler) Submit(t Ticket) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queues[t.Priority] = append(s.queues[t.Priority], t)
	run := s.dispatchLocked()
	s.mu.Unlock()
	startAll(run)
}

// Acquire takes a slot for id without queueing, even past the limits. It is
// for agents that already held one before a daemon restart.
func (s *Scheduler) Acquire(id string, llm bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.holders[id]; ok {
		return
	}
	s.holders[id] = llm
	if llm {
		s.llm++
	}
}

// Reacquire queues id for a slot again, after it gave its own up with
// Release, and waits until it holds one or ctx ends. A parent agent that
// waits for its sub-agent lends it its slot this way, so that the two never
// wait on each other for slots.
func (s *Scheduler) Reacquire(ctx context.Context, id string, p Priority, llm bool) error {
	got := make(chan struct{})
	s.Submit(Ticket{ID: id, Priority: p, LLM: llm, Start: func() { close(got) }})
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		s.Cancel(id) // if it was admitted meanwhile, the slot is freed with the agent
		return ctx.Err()
	}
}

// Release frees the slot held by id, if any, and admits waiting tickets.
func (s *Scheduler) Release(id string) {
	s.mu.Lock()
	llm, ok := s.holders[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	delete(s.holders, id)
	if llm {
		s.llm--
	}
	run := s.dispatchLocked()
	s.mu.Unlock()
	startAll(run)
}

// Cancel removes a waiting ticket and reports whether it was waiting.
func (s *Scheduler) Cancel(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.queues {
		for i, t := range s.queues[p] {
			if t.ID == id {
				s.queues[p] = append(s.queues[p][:i:i], s.queues[p][i+1:]...)
				return true
			}
		}
	}
	return false
}

// Positions returns the 1-based place in the queue of every waiting id.
func (s *Scheduler) Positions() map[string]int {
	pos := map[string]int{}
	for id, w := range s.Waiting() {
		pos[id] = w.Position
	}
	return pos
}

// Wait is where a queued ticket stands and why it waits.
type Wait struct {
	Position int
	// Why names the limit it waits for: "256 of 256 running", "8 of 8
	// llm agents running", "60 of 60 starts in the last minute".
	Why string
}

// Waiting returns, for each queued id, its place and why it waits.
func (s *Scheduler) Waiting() map[string]Wait {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Wait{}
	n := 0
	full := len(s.holders) >= s.limits.MaxRunning
	rated := s.limits.SpawnsPerMinute > 0 && len(s.starts) >= s.limits.SpawnsPerMinute
	for p := Critical; p >= Low; p-- {
		for _, t := range s.queues[p] {
			n++
			var why string
			switch {
			case full:
				why = fmt.Sprintf("%d of %d running", len(s.holders), s.limits.MaxRunning)
			case rated:
				why = fmt.Sprintf("%d of %d starts in the last minute", len(s.starts), s.limits.SpawnsPerMinute)
			case t.LLM && s.llm >= s.limits.MaxRunningLLM:
				why = fmt.Sprintf("%d of %d llm agents running", s.llm, s.limits.MaxRunningLLM)
			default:
				why = "about to start"
			}
			out[t.ID] = Wait{Position: n, Why: why}
		}
	}
	return out
}

// Snapshot returns the limits, the running counts and the queue.
func (s *Scheduler) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Limits: s.limits, Running: len(s.holders), RunningLLM: s.llm, Queued: []QueueLevel{}}
	for p := Critical; p >= Low; p-- {
		lvl := QueueLevel{Priority: p.String(), IDs: []string{}}
		for _, t := range s.queues[p] {
			lvl.IDs = append(lvl.IDs, t.ID)
		}
		snap.QueuedTotal += len(lvl.IDs)
		snap.Queued = append(snap.Queued, lvl)
	}
	return snap
}

// Close stops admitting; waiting tickets stay unstarted.
func (s *Scheduler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

func startAll(ts []Ticket) {
	for _, t := range ts {
		go t.Start()
	}
}

// dispatchLocked admits every ticket the limits allow, highest priority
// first. A language-model ticket that finds the LLM slots full does not hold
// back process tickets behind it.
func (s *Scheduler) dispatchLocked() []Ticket {
	if s.closed {
		return nil
	}
	var run []Ticket
	for p := Critical; p >= Low; p-- {
		q := s.queues[p]
		kept := q[:0]
		for i, t := range q {
			if _, holds := s.holders[t.ID]; holds {
				// An id holds one slot however many tickets it has (a
				// parent reacquiring after several sub-agents): this one
				// is served by the slot it already holds.
				run = append(run, t)
				continue
			}
			if len(s.holders) >= s.limits.MaxRunning || !s.rateAllowsLocked() {
				kept = append(kept, q[i:]...)
				break
			}
			if t.LLM && s.llm >= s.limits.MaxRunningLLM {
				kept = append(kept, t)
				continue
			}
			s.holders[t.ID] = t.LLM
			if t.LLM {
				s.llm++
			}
			if s.limits.SpawnsPerMinute > 0 {
				s.starts = append(s.starts, s.now())
			}
			run = append(run, t)
		}
		clear(q[len(kept):])
		s.queues[p] = kept
	}
	return run
}

// rateAllowsLocked reports whether another start fits in the rate window,
// and if not, arms a timer for when it will.
func (s *Scheduler) rateAllowsLocked() bool {
	limit := s.limits.SpawnsPerMinute
	if limit <= 0 {
		s.starts = nil
		return true
	}
	now := s.now()
	i := 0
	for i < len(s.starts) && now.Sub(s.starts[i]) >= window {
		i++
	}
	s.starts = s.starts[i:]
	if len(s.starts) < limit {
		return true
	}
	if s.timer == nil {
		wait := s.starts[len(s.starts)-limit].Add(window).Sub(now)
		s.timer = time.AfterFunc(wait, s.wake)
	}
	return false
}

func (s *Scheduler) wake() {
	s.mu.Lock()
	s.timer = nil
	run := s.dispatchLocked()
	s.mu.Unlock()
	startAll(run)
}
