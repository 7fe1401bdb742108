package supervisor

import (
	"errors"
	"time"

	"github.com/oxios/oxios/internal/metrics"
)

// end moves a to a terminal state, publishes its one terminal event and
// frees its slot. The caller holds a.mu.
func (s *Supervisor) end(a *agent, st State, reason string) {
	if a.rec.Kind == KindLLM {
		st, reason = s.storeOutput(a, st, reason)
	}
	now := time.Now().UTC()
	reason = Clip(reason, maxReason)
	a.rec.State, a.rec.Reason, a.rec.EndedAt = st, reason, &now
	a.rec.PID, a.rec.ProcStart, a.rec.NextStartAt = 0, 0, nil
	data := map[string]any{"reason": reason, "exit_code": a.rec.ExitCode, "signal": a.rec.Signal, "restarts": a.rec.Restarts}
	// Readers learn the end only once it is stored: a failed write is
	// tried again while the daemon runs, and until then readers keep the
	// last stored record. If it never is (the daemon stops first), the
	// next boot recovers the agent from that record. The slot is freed
	// after the end's event, which keeps the event log's running count
	// within the limits.
	err := s.save(a, "agent."+string(st), data)
	metrics.Exits.WithLabelValues(a.rec.Kind, string(st)).Inc()
	a.kill, a.restart = nil, false
	s.o.Scheduler.Release(a.id)
	if err != nil && !s.halted.Load() && s.ctx.Err() == nil && !errors.Is(err, ErrTaken) {
		a.endPending = true
		go s.storeEnd(a, "agent."+string(st), data)
		return
	}
	s.ended(a)
}

// storeEnd writes a's end until the backbone takes it or the supervisor
// closes.
func (s *Supervisor) storeEnd(a *agent, typ string, data any) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
		}
		a.mu.Lock()
		if err := s.save(a, typ, data); err == nil || errors.Is(err, ErrTaken) || s.ctx.Err() != nil || s.halted.Load() {
			a.endPending = false
			s.ended(a)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// ended closes a's run once its end is stored (or will never be). The
// caller holds a.mu.
func (s *Supervisor) ended(a *agent) {
	if a.lost { // another node's now: nothing of its end is this node's
		s.dropLost(a)
		return
	}
	close(a.done)
	if s.o.OnEnd != nil && !s.halted.Load() {
		rec := a.rec
		s.mu.Lock()
		if s.hooksClosed { // the daemon is past stopping its agents
			s.mu.Unlock()
			s.log.Warn("an agent ended after its supervisor closed; its end hook is skipped", "agent", a.id)
		} else {
			s.hooks.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.hooks.Done()
				s.o.OnEnd(rec)
			}()
		}
	}
	select {
	case s.sweep <- struct{}{}:
	default:
	}
}

// SetRetention changes how many ended agents are kept, and for how long,
// and applies it at once.
func (s *Supervisor) SetRetention(retain int, retainFor time.Duration) {
	s.mu.Lock()
	s.o.Retain, s.o.RetainFor = retain, retainFor
	s.mu.Unlock()
	select {
	case s.sweep <- struct{}{}:
	default:
	}
}

// Stats are counts over agents.
type Stats struct {
	ByState map[State]int `json:"by_state"`
	Total   int           `json:"total"`
	// Usage sums what the runs started since a time used (see Stats).
	Usage Usage `json:"usage"`
}

// Stats counts the agents of the cluster (of node only, if not empty) by
// state and sums the usage of the runs that started at or after since.
func (s *Supervisor) Stats(since time.Time, node string) Stats {
	st := Stats{ByState: map[State]int{}}
	cost, priced := 0.0, false
	add := func(r *Record) {
		if r == nil || (node != "" && r.Node != node) {
			return
		}
		st.Total++
		st.ByState[r.State]++
		if r.StartedAt == nil || r.StartedAt.Before(since) {
			return
		}
		u := r.Usage
		st.Usage.TokensIn += u.TokensIn
		st.Usage.TokensOut += u.TokensOut
		st.Usage.LLMCalls += u.LLMCalls
		st.Usage.ToolCalls += u.ToolCalls
		if u.CostUSD != nil {
			cost, priced = cost+*u.CostUSD, true
		}
	}
	s.eachRecord(add)
	if priced {
		st.Usage.CostUSD = &cost
	}
	return st
}

// ByNode counts the cluster's agents by node and state.
func (s *Supervisor) ByNode() map[string]map[State]int {
	out := map[string]map[State]int{}
	add := func(r *Record) {
		if r == nil {
			return
		}
		if out[r.Node] == nil {
			out[r.Node] = map[State]int{}
		}
		out[r.Node][r.State]++
	}
	s.eachRecord(add)
	return out
}

// eachRecord calls fn with the last stored record of every agent of the
// cluster: this node's, then the others'.
func (s *Supervisor) eachRecord(fn func(*Record)) {
	s.mu.Lock()
	for _, a := range s.agents {
		fn(a.snap.Load())
	}
	s.mu.Unlock()
	s.remote.mu.Lock()
	for _, r := range s.remote.recs {
		fn(r)
	}
	s.remote.mu.Unlock()
}
