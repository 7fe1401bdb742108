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
// running or backing off first has what is left of its old process group
// terminated (found by PID and process start time, never by PID alone);
// then it starts again with reason "daemon restart" if its restart policy
// allows, or ends failed with reason "interrupted". Those agents take their
// slots back before any queued agent is admitted.
func (s *Supervisor) recover(recs []Record) {
	var queued []*agent
	var tagged map[string][]proc.Tagged // processes by the agent id in their environment
	for _, r := range recs {
		a := newAgent(r)
		s.agents[a.id] = a
		switch {
		case r.State.Terminal():
		case r.State == Queued:
			// Started an instant before the daemon died, before its PID
			// was written? Then stop that process, and run it again.
			if tagged == nil {
				tagged = proc.ByEnv("OXIOS_AGENT_ID")
			}
			for _, p := range tagged[r.ID] {
				proc.Terminate(p.PID, p.Start, syscall.SIGKILL, 0)
			}
			queued = append(queued, a)
		default:
			s.o.Scheduler.Acquire(a.id, r.Kind == KindLLM)
			s.runs.Add(1)
			a.started = true
			go s.resume(a)
		}
	}
	for _, a := range queued {
		a.mu.Lock()
		s.submit(a)
		a.mu.Unlock()
	}
}

// resume is run for an agent that was active when the last daemon stopped.
func (s *Supervisor) resume(a *agent) {
	a.mu.Lock()
	r := a.rec
	a.mu.Unlock()
	if r.PID > 0 {
		grace := dur(r.Spec.StopTimeout)
		if n := proc.Terminate(r.PID, r.ProcStart, signals[r.Spec.StopSignal], grace); n > 0 {
			s.log.Info("terminated the processes an agent left behind", "agent", a.id, "pid", r.PID, "processes", n)
		}
	}
	a.mu.Lock()
	if r.Kind != KindProcess || r.Spec.Restart.Policy == Never {
		a.rec.ExitCode, a.rec.Signal = nil, ""
		s.end(a, Failed, "interrupted")
		a.mu.Unlock()
		s.runs.Done()
		return
	}
	a.rec.PID, a.rec.ProcStart = 0, 0
	s.publish(a.id, "agent.restarting", map[string]any{"attempt": 0, "delay_ms": 0, "reason": "daemon restart"})
	a.mu.Unlock()
	s.run(a, "daemon restart")
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
	s.mu.Unlock()
	slices.SortFunc(all, func(x, y ended) int { return y.end.Compare(x.end) })
	cutoff := time.Now().Add(-s.o.RetainFor)
	n := 0
	for i, e := range all {
		if i < s.o.Retain && (s.o.RetainFor <= 0 || e.end.After(cutoff)) {
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
