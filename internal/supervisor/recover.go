package supervisor

import (
	"context"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/proc"
)

// recover takes over every record an earlier daemon left unfinished. Queued
// agents queue again in their old order. An agent that was starting,
// running or backing off first has what is left of its old processes
// terminated; then it starts again with reason "daemon restart" if its
// restart policy allows, or ends failed with reason "interrupted". Those
// agents take their slots back before any queued agent is admitted.
//
// Old processes are found by the recorded PID and process start time, never
// by PID alone, and by the OXIOS_AGENT_ID in their environment: a process
// forked an instant before the daemon died has no PID on record yet.
func (s *Supervisor) recover(recs []Record, revs map[string]uint64, moved map[string]bool) {
	var queued []*agent
	// Processes this node started for agents another node took over while
	// it was down are what it left behind, on this machine: they are
	// stopped. Only agents the shared bucket says another node runs now
	// are looked at: a daemon of another home on this machine may have the
	// same node name, and its agents are not this one's.
	tagged := proc.ByEnvWith("OXIOS_AGENT_ID", "OXIOS_NODE")
	for id, ps := range tagged {
		if !moved[id] {
			continue
		}
		var left []proc.Tagged
		for _, p := range ps {
			if p.Also == s.o.Node {
				left = append(left, p)
			}
		}
		if n := proc.Terminate(left, syscall.SIGKILL, 0); n > 0 {
			s.log.Info("stopped the processes of an agent another node runs now", "agent", id, "processes", n)
		}
	}
	for _, r := range recs {
		a := newAgent(r)
		a.rev = revs[r.ID]
		a.seen.Store(a.rev)
		s.agents[a.id] = a
		switch {
		case r.State.Terminal():
		case r.State == Queued:
			// A process of a queued agent can only be one started as the
			// daemon died: stop it, and run the agent as it was meant to.
			proc.Terminate(tagged[r.ID], syscall.SIGKILL, 0)
			queued = append(queued, a)
		default:
			s.o.Scheduler.Acquire(a.id, r.Kind == KindLLM)
			s.runs.Add(1)
			a.started = true
			go s.resume(a, tagged[r.ID])
		}
	}
	for _, a := range queued {
		a.mu.Lock()
		s.submit(a)
		a.mu.Unlock()
	}
}

// resume is run for an agent that was active when the last daemon stopped;
// tagged are the live processes that carry its id.
func (s *Supervisor) resume(a *agent, tagged []proc.Tagged) {
	a.mu.Lock()
	r := a.rec
	a.mu.Unlock()
	old := append(proc.Leftovers(r.PID, r.ProcStart, "OXIOS_AGENT_ID="+r.ID), tagged...)
	if n := proc.Terminate(old, signals[r.Spec.StopSignal], dur(r.Spec.StopTimeout)); n > 0 {
		s.log.Info("terminated the processes an agent left behind", "agent", a.id, "pid", r.PID, "processes", n)
	}
	a.mu.Lock()
	a.rec.PID, a.rec.ProcStart = 0, 0
	resumable := r.Kind == KindLLM && s.o.LLM != nil && s.o.LLM.Resumable(context.Background(), r)
	switch {
	case a.kill != nil: // killed while its old processes were being stopped
		s.end(a, Killed, a.kill.reason)
	case resumable:
		// A language-model run goes on from its last checkpoint.
		a.rec.State = Running
		a.mu.Unlock()
		s.run(a, recovery)
		return
	case r.Kind != KindProcess || r.Spec.Restart.Policy == Never:
		a.rec.ExitCode, a.rec.Signal = nil, ""
		s.end(a, Failed, "interrupted")
	default:
		s.publish(a.id, "agent.restarting", map[string]any{"attempt": 0, "delay_ms": 0, "reason": recovery.reason})
		a.mu.Unlock()
		s.run(a, recovery)
		return
	}
	a.mu.Unlock()
	s.runs.Done()
}

// retain deletes ended agents past the configured count or age, after an
// agent ends (at most every few seconds) and every minute.
func (s *Supervisor) retain() {
	defer close(s.swept)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.sweep:
		}
		s.Sweep(s.ctx)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(2 * time.Second): // coalesce bursts of endings
		}
	}
}

// Sweep applies retention once and returns how many agents it deleted.
func (s *Supervisor) Sweep(ctx context.Context) int {
	type ended struct {
		a   *agent
		end time.Time
	}
	var all []ended
	s.mu.Lock()
	for _, a := range s.agents {
		if r := a.snap.Load(); r.State.Terminal() && r.EndedAt != nil {
			all = append(all, ended{a, *r.EndedAt})
		}
	}
	retain, retainFor := s.o.Retain, s.o.RetainFor
	s.mu.Unlock()
	slices.SortFunc(all, func(x, y ended) int { return y.end.Compare(x.end) })
	cutoff := time.Now().Add(-retainFor)
	n := 0
	for i, e := range all {
		if i < retain && (retainFor <= 0 || e.end.After(cutoff)) {
			continue
		}
		e.a.mu.Lock()
		if e.a.rec.State.Terminal() && s.remove(ctx, e.a, "retention") == nil {
			n++
		}
		e.a.mu.Unlock()
	}
	if n > 0 {
		// Deletes leave markers in the bucket; drop them so it stays bounded.
		s.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1))
	}
	return n
}
