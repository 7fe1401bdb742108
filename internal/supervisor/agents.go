package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/scheduler"
)

// Check validates spec as Spawn would (for the caller in ctx), without
// spawning it.
func (s *Supervisor) Check(ctx context.Context, spec Spec) error { return s.check(ctx, &spec) }

// check validates spec and fills its defaults; a caller marked Restricted
// in ctx may not widen its sandbox. Paths are resolved once, here, and
// the widening is judged on what is then stored.
func (s *Supervisor) check(ctx context.Context, spec *Spec) error {
	n, err := normalize(spec, s.o.Defaults)
	if err != nil {
		return err
	}
	if IsRestricted(ctx) {
		if w := s.widening(n); len(w) > 0 {
			return &ForbiddenError{Field: w[0], Msg: fmt.Sprintf("widening the sandbox beyond the configured defaults needs the admin role (%s)", strings.Join(w, ", "))}
		}
	}
	if spec.Kind == KindLLM {
		if s.o.LLM == nil {
			return invalid("kind", "llm agents are not available in this daemon")
		}
		if err := s.o.LLM.Check(spec); err != nil {
			return err
		}
	}
	return nil
}

// Spawn validates spec, places it on a node of the cluster (place.go),
// persists a queued record there and submits it to that node's scheduler.
// It returns at once; the agent starts when admitted.
func (s *Supervisor) Spawn(ctx context.Context, spec Spec) (Record, error) {
	if s.o.Nodes == nil {
		return s.spawnHere(ctx, spec, "")
	}
	given := copySpec(spec)
	if err := s.check(ctx, &spec); err != nil {
		return Record{}, err
	}
	node, why, err := s.place(spec, "", nil)
	if err != nil {
		return Record{}, err
	}
	if node != s.o.Node {
		return s.spawnOn(ctx, node, given, why)
	}
	return s.create(ctx, spec, why)
}

// spawnHere checks spec and spawns it on this node, placed there for why.
func (s *Supervisor) spawnHere(ctx context.Context, spec Spec, why string) (Record, error) {
	if err := s.check(ctx, &spec); err != nil {
		return Record{}, err
	}
	if s.fenced.Load() {
		return Record{}, fmt.Errorf("node %s cannot renew its lease in the cluster and runs no agents until it can; spawn on another node: %w", s.o.Node, oxios.ErrUnreachable)
	}
	return s.create(ctx, spec, why)
}

// create stores a queued record of the checked spec on this node and
// submits it to the scheduler.
func (s *Supervisor) create(ctx context.Context, spec Spec, why string) (Record, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Record{}, err
	}
	rec := Record{ID: id.String(), Kind: spec.Kind, Name: spec.Name, State: Queued, Node: s.o.Node, Placed: why,
		CreatedAt: time.Now().UTC(), Spec: spec}
	if rec.Spec.Dir == "" {
		rec.Spec.Dir = filepath.Join(s.o.WorkspacesDir, rec.ID)
		rec.DefaultDir = true
	}
	a := newAgent(rec)
	a.mu.Lock()
	defer a.mu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Record{}, ErrClosed
	}
	s.agents[a.id] = a
	s.mu.Unlock()
	if err := ctx.Err(); err != nil { // the caller has gone: nothing is written
		s.mu.Lock()
		delete(s.agents, a.id)
		s.mu.Unlock()
		return Record{}, err
	}
	if err := s.save(a, "agent.spawned", map[string]any{"name": spec.Name, "kind": spec.Kind, "priority": spec.Priority}); err != nil {
		s.mu.Lock()
		delete(s.agents, a.id)
		s.mu.Unlock()
		return Record{}, err
	}
	s.submit(a)
	metrics.Spawns.WithLabelValues(spec.Kind).Inc()
	out := a.rec
	s.queued(&out, nil)
	return out, nil
}

// submit queues a for a slot. The caller holds a.mu.
func (s *Supervisor) submit(a *agent) { s.submitFor(a, start{}) }

// submitFor queues a for a slot, to start for why. The caller holds a.mu.
func (s *Supervisor) submitFor(a *agent, why start) {
	a.started = false
	p, _ := scheduler.ParsePriority(a.rec.Spec.Priority)
	s.o.Scheduler.Submit(scheduler.Ticket{ID: a.id, Priority: p, LLM: a.rec.Kind == KindLLM, Start: func() {
		if !s.begin() {
			return
		}
		go s.run(a, why)
	}})
}

// Get returns the record of agent id. Another node's agent is asked of
// its node; if that node does not answer, its stored record is returned.
func (s *Supervisor) Get(id string) (Record, error) {
	a, err := s.get(id)
	if err != nil {
		r, rerr := s.owner(id)
		if rerr != nil {
			return Record{}, rerr
		}
		rp, ferr := s.forward(context.Background(), r.Node, request{Op: "get", ID: id}, forwardTimeout)
		switch {
		case ferr == nil && rp.Record != nil:
			return *rp.Record, nil
		case errors.Is(ferr, oxios.ErrUnreachable):
			return r, nil
		case errors.Is(ferr, ErrNotFound):
			return Record{}, ferr
		}
		return r, nil
	}
	r := *a.snap.Load()
	s.queued(&r, nil)
	return r, nil
}

// Stored returns the last stored record of agent id, this node's or
// another's, without asking another node.
func (s *Supervisor) Stored(id string) (Record, error) {
	if a, err := s.get(id); err == nil {
		return *a.snap.Load(), nil
	}
	return s.owner(id)
}

// queued fills in where a queued agent stands and why it waits (from
// waiting, or the scheduler if nil).
func (s *Supervisor) queued(r *Record, waiting map[string]scheduler.Wait) {
	if r.State != Queued {
		return
	}
	if waiting == nil {
		waiting = s.o.Scheduler.Waiting()
	}
	if w, ok := waiting[r.ID]; ok {
		r.QueuePosition, r.QueueReason = w.Position, "queued: "+w.Why
	}
}

// Filter selects agents in List. Empty fields match everything.
type Filter struct {
	States []State
	Kind   string
	Name   string
	// Node is the node the agents run on.
	Node string
	// Labels must all be present with these values.
	Labels map[string]string
}

func (f Filter) match(r *Record) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, r.State) {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.Name != "" && r.Name != f.Name {
		return false
	}
	if f.Node != "" && r.Node != f.Node {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := r.Spec.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List returns the agents of the whole cluster that match f, newest
// first, at most limit of them after cursor (the id of the last one of the
// previous page); next is the cursor of the following page, or "".
func (s *Supervisor) List(f Filter, limit int, cursor string) (recs []Record, next string) {
	s.mu.Lock()
	all := make([]*Record, 0, len(s.agents))
	for _, a := range s.agents {
		if r := a.snap.Load(); f.match(r) && (cursor == "" || r.ID < cursor) {
			all = append(all, r)
		}
	}
	s.mu.Unlock()
	all = s.remoteList(f, cursor, all)
	slices.SortFunc(all, func(a, b *Record) int { return strings.Compare(b.ID, a.ID) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
		next = all[limit-1].ID
	}
	var waiting map[string]scheduler.Wait
	recs = make([]Record, len(all))
	for i, r := range all {
		recs[i] = *r
		if r.Node != s.o.Node {
			continue
		}
		if r.State == Queued && waiting == nil {
			waiting = s.o.Scheduler.Waiting()
		}
		s.queued(&recs[i], waiting)
	}
	return recs, next
}

// Wait blocks until agent id's current run has ended, or ctx is done, and
// returns its record.
func (s *Supervisor) Wait(ctx context.Context, id string) (Record, error) {
	a, err := s.get(id)
	if err != nil {
		return s.waitRemote(ctx, id)
	}
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	select {
	case <-done:
		a.mu.Lock()
		lost := a.lost
		a.mu.Unlock()
		if lost { // another node runs it now
			return s.waitRemote(ctx, id)
		}
		return *a.snap.Load(), nil
	case <-ctx.Done():
		return s.Get(id)
	}
}

// Kill stops agent id: a queued agent is cancelled, a running one is sent
// its stop signal and, after grace (negative: the spec's stop_timeout),
// SIGKILL, all as a process group. It waits until the agent has ended or
// ctx is done, and returns the record.
func (s *Supervisor) Kill(ctx context.Context, id string, grace time.Duration) (Record, error) {
	a, err := s.get(id)
	if err != nil {
		return s.forwardRecord(ctx, id, request{Op: "kill", ID: id, Grace: grace}, killTimeout)
	}
	a.mu.Lock()
	switch {
	case a.gone:
		a.mu.Unlock()
		return Record{}, fmt.Errorf("agent %s: %w", id, ErrNotFound)
	case a.endPending: // it has ended; wait until that is stored
	case a.rec.State.Terminal():
		a.mu.Unlock()
		return Record{}, fmt.Errorf("agent %s has already ended (%s): %w", id, a.rec.State, ErrConflict)
	case !a.started && s.o.Scheduler.Cancel(id):
		s.end(a, Killed, "cancelled")
		a.mu.Unlock()
		return *a.snap.Load(), nil
	case a.halted: // stopped by fencing: no run goroutine to tell
		a.halted = false
		s.end(a, Killed, "kill requested")
		a.mu.Unlock()
		return *a.snap.Load(), nil
	}
	if a.kill == nil && !a.endPending {
		a.kill = &killRequest{reason: "kill requested", grace: grace}
	}
	a.poke()
	done := a.done
	a.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return *a.snap.Load(), nil
}

// Restart restarts agent id: an ended agent starts a new run through the
// scheduler; a running or backing-off one is stopped and started again at
// once. Manual restarts are not counted in restarts and reset the backoff.
func (s *Supervisor) Restart(ctx context.Context, id string) (Record, error) {
	a, err := s.get(id)
	if err != nil {
		return s.forwardRecord(ctx, id, request{Op: "restart", ID: id}, forwardTimeout)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.gone: // deleted while this call waited for the lock
		return Record{}, fmt.Errorf("agent %s: %w", id, ErrNotFound)
	case a.rec.State == Queued:
		return Record{}, fmt.Errorf("agent %s is queued and has not started yet: %w", id, ErrConflict)
	case a.endPending:
		return Record{}, fmt.Errorf("agent %s has ended, but the backbone has not yet taken its record; try again: %w", id, ErrConflict)
	case a.rec.State.Terminal():
		if s.isClosed() {
			return Record{}, ErrClosed
		}
		if err := ctx.Err(); err != nil { // the caller has gone: nothing changes
			return Record{}, err
		}
		prev := a.rec
		a.rec.State, a.rec.Reason = Queued, "restart requested"
		a.rec.EndedAt, a.rec.ExitCode, a.rec.Signal, a.rec.StartedAt = nil, nil, "", nil
		a.rec.Backoffs, a.rec.RecentRestarts = 0, nil
		if err := s.save(a, "agent.restarting", map[string]any{"attempt": 0, "delay_ms": 0, "reason": "restart requested"}); err != nil {
			a.rec = prev // still ended, as stored
			a.publishSnap()
			return Record{}, err
		}
		a.done = make(chan struct{})
		a.kill, a.restart = nil, false
		metrics.Restarts.WithLabelValues(a.rec.Kind).Inc()
		s.submit(a)
	default:
		a.restart = true
		a.poke()
	}
	r := a.rec
	s.queued(&r, nil)
	return r, nil
}

// Delete removes an ended agent: its record, its log files and, when it
// ran in its own workspace, that workspace.
func (s *Supervisor) Delete(ctx context.Context, id string) error {
	a, err := s.get(id)
	if err != nil {
		_, err := s.forwardRecord(ctx, id, request{Op: "delete", ID: id}, forwardTimeout)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone {
		return fmt.Errorf("agent %s: %w", id, ErrNotFound)
	}
	if !a.rec.State.Terminal() {
		return fmt.Errorf("agent %s is %s; kill it first (only ended agents can be deleted): %w", id, a.rec.State, ErrConflict)
	}
	return s.remove(ctx, a, "deleted")
}

// remove deletes a's record and files. The caller holds a.mu.
func (s *Supervisor) remove(ctx context.Context, a *agent, reason string) error {
	if a.gone {
		return nil
	}
	if a.endPending {
		return fmt.Errorf("agent %s has ended, but the backbone has not yet taken its record; try again: %w", a.id, ErrConflict)
	}
	if a.rec.OutputTruncated {
		if err := s.outputs.Delete(ctx, a.id); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete the output of agent %s: %w", a.id, err)
		}
	}
	if err := s.kv.Purge(ctx, a.id, jetstream.LastRevision(a.rev)); err != nil {
		return fmt.Errorf("delete agent %s: %w", a.id, err)
	}
	a.gone = true
	s.mu.Lock()
	delete(s.agents, a.id)
	s.mu.Unlock()
	logs, _ := filepath.Glob(s.LogPath(a.id) + "*")
	for _, f := range logs {
		os.Remove(f)
	}
	if a.rec.DefaultDir && filepath.Dir(a.rec.Spec.Dir) == filepath.Clean(s.o.WorkspacesDir) {
		os.RemoveAll(a.rec.Spec.Dir)
	} else {
		os.RemoveAll(filepath.Join(s.o.WorkspacesDir, a.id)) // its private TMPDIR
	}
	s.publish(a.id, "agent.deleted", map[string]string{"reason": reason})
	return nil
}

// forwardRecord forwards rq to the node of another node's agent id and
// returns the record it answers with.
func (s *Supervisor) forwardRecord(ctx context.Context, id string, rq request, timeout time.Duration) (Record, error) {
	r, err := s.owner(id)
	if err != nil {
		return Record{}, err
	}
	rp, err := s.forward(ctx, r.Node, rq, timeout)
	if err != nil {
		return Record{}, err
	}
	if rp.Record != nil {
		return *rp.Record, nil
	}
	return r, nil
}

// LogPath is where agent id's output goes.
func (s *Supervisor) LogPath(id string) string {
	return filepath.Join(s.o.LogDir, id+".log")
}

// Scheduler returns the scheduler's state.
func (s *Supervisor) Scheduler() scheduler.Snapshot { return s.o.Scheduler.Snapshot() }
