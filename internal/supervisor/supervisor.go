// Package supervisor owns the lifecycle of agents: it persists each agent's
// record in the agents bucket before anything runs, admits agents through
// the scheduler, runs process agents, restarts them by policy with backoff
// and an intensity limit, kills them as a group, and recovers every
// unfinished agent when the daemon boots again.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
)

// Errors callers test for, defined in package oxios.
var (
	ErrNotFound = oxios.ErrNotFound
	ErrConflict = oxios.ErrConflict
	ErrClosed   = oxios.ErrClosed
	ErrBudget   = oxios.ErrBudget
)

// Publisher stores events; *bus.Bus is one.
type Publisher interface {
	Publish(ctx context.Context, ev bus.Event) (bus.Event, error)
}

// Options configure a Supervisor.
type Options struct {
	JS        jetstream.JetStream
	Replicas  int
	Bus       Publisher
	Scheduler *scheduler.Scheduler
	Node      string
	// WorkspacesDir holds each agent's default working directory.
	WorkspacesDir string
	// LogDir holds each agent's log, <id>.log.
	LogDir      string
	LogMaxSize  int64
	LogMaxFiles int
	// URL is the daemon's API URL, given to agents as OXIOS_URL.
	URL string
	// Home is the daemon's home: no sandbox reaches into it but for an
	// agent's own workspace, unless an admin widens it.
	Home string
	// SecretsDir holds env/NAME, the values of secret variables.
	SecretsDir string
	Defaults   SpecDefaults
	// Retain ended agents, at most this many and none older than RetainFor.
	Retain    int
	RetainFor time.Duration
	Logger    *slog.Logger
	// LLM runs language-model agents; without it they cannot be spawned.
	LLM LLM
	// OnEnd, if set, is called (on its own goroutine) when a run ends.
	OnEnd func(Record)
	// Budgets, if set, admit each run of an llm agent.
	Budgets Admitter
}

// homeOutsideSandboxes refuses a home that every sandbox may read or
// write (one in /opt, say): its secrets would be every agent's.
func homeOutsideSandboxes(o Options) error {
	if o.Home == "" {
		return nil
	}
	home := sandbox.Resolve(o.Home)
	for _, d := range []sandbox.Spec{o.Defaults.Sandbox, o.Defaults.ExecSandbox} {
		if d.Mode == sandbox.Off {
			continue
		}
		for _, dir := range slices.Concat(sandbox.SystemRead, d.Read, d.Write) {
			if sandbox.Within(home, sandbox.Resolve(dir)) {
				return fmt.Errorf("the oxios home %s lies in %s, which every agent's sandbox may read: move it (for example to /var/lib/oxios) or take %s out of [sandbox]", o.Home, dir, dir)
			}
		}
	}
	return nil
}

// ForbiddenError is a spec its caller may not give; Field names what.
type ForbiddenError = oxios.ForbiddenError

type restrictedKey struct{}

// Restricted marks ctx as a caller who may not widen an agent's sandbox
// beyond the configured defaults (anyone but an admin).
func Restricted(ctx context.Context) context.Context {
	return context.WithValue(ctx, restrictedKey{}, true)
}

// IsRestricted reports whether ctx was marked by Restricted.
func IsRestricted(ctx context.Context) bool {
	v, _ := ctx.Value(restrictedKey{}).(bool)
	return v
}

// NotFoundError is something other than an agent that does not exist.
type NotFoundError = oxios.NotFoundError

// Admitter decides whether an llm agent may start; internal/budget
// implements it.
type Admitter interface {
	// Admit returns nil, or an error matching ErrBudget with the time the
	// budget frees (zero: unknown) and a channel closed when budgets change.
	Admit(rec Record) (until time.Time, changed <-chan struct{}, err error)
}

// Bucket is the key/value bucket of agent records.
const Bucket = "agents"

// OutputsBucket is the object store of the outputs too large for a record.
const OutputsBucket = "outputs"

// Supervisor runs agents. Create it with Open.
type Supervisor struct {
	o       Options
	kv      jetstream.KeyValue
	outputs jetstream.ObjectStore
	log     *slog.Logger
	// maxRecord is the largest record written: under the backbone's
	// largest message, with room for its headers.
	maxRecord int

	ctx    context.Context // ends runs at Close
	cancel context.CancelFunc
	// grace caps each agent's stop timeout during shutdown.
	grace atomic.Int64
	// halted makes the supervisor act as if the daemon had died: from then
	// on it writes nothing and leaves processes alone (tests of recovery).
	halted atomic.Bool

	mu     sync.Mutex
	agents map[string]*agent
	closed bool
	runs   sync.WaitGroup // every goroutine that runs or recovers an agent
	// hooks counts the OnEnd calls under way; none starts once
	// hooksClosed (set by Close when every run has ended).
	hooks       sync.WaitGroup
	hooksClosed bool
	sweep       chan struct{}
	swept       chan struct{} // closed when the retention loop has ended

	// lent counts, per parent, the spawn_agent calls it lent its slot to.
	lendMu sync.Mutex
	lent   map[string]int
}

// agent is the in-memory side of one record.
type agent struct {
	id string
	// mu serializes transitions: a change, its write and its event.
	mu   sync.Mutex
	rec  Record
	snap atomic.Pointer[Record] // the last saved record, for readers
	// done is closed when the current run ends.
	done chan struct{}
	// Requests to the goroutine running the agent, guarded by mu; wake
	// tells it to look.
	kill    *killRequest
	restart bool
	wake    chan struct{}
	started bool // the current run has been admitted
	gone    bool // deleted
	// endPending: the run has ended, but its end is not stored yet; done
	// is closed once it is.
	endPending bool
	// lastProgress is when an llm run's progress was last written.
	lastProgress time.Time
	// output is the whole latest output of the running llm loop, of which
	// the record holds the start; it goes to the outputs bucket at the end.
	output string
}

type killRequest struct {
	reason string
	grace  time.Duration // -1: the spec's stop_timeout
}

func newAgent(rec Record) *agent {
	a := &agent{id: rec.ID, rec: rec, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if rec.State.Terminal() {
		close(a.done)
	}
	a.publishSnap()
	return a
}

func (a *agent) publishSnap() {
	r := a.rec
	a.snap.Store(&r)

}

func (a *agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Open loads every record, recovers the unfinished ones (see recover.go)
// and starts the retention loop.
func Open(ctx context.Context, o Options) (*Supervisor, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	for _, d := range []string{o.WorkspacesDir, o.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// Workspaces are granted to sandboxes by their resolved path.
	if ws, err := filepath.EvalSymlinks(o.WorkspacesDir); err == nil {
		o.WorkspacesDir = ws
	}
	if err := homeOutsideSandboxes(o); err != nil {
		return nil, err
	}
	kv, err := o.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   Bucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	outputs, err := o.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      OutputsBucket,
		Description: "outputs of llm agents too large for their records",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", OutputsBucket, err)
	}
	s := &Supervisor{o: o, kv: kv, outputs: outputs, log: o.Logger, agents: map[string]*agent{}, lent: map[string]int{},
		sweep: make(chan struct{}, 1), swept: make(chan struct{}), maxRecord: 1<<20 - 64<<10}
	if mp := o.JS.Conn().MaxPayload(); mp > 128<<10 {
		s.maxRecord = int(mp) - 64<<10
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.grace.Store(int64(time.Hour))
	recs, err := s.load(ctx)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.recover(recs)
	go s.retain()
	return s, nil
}

// load reads every record of this node in the bucket, oldest first.
func (s *Supervisor) load(ctx context.Context) ([]Record, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	var recs []Record
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read agent %s: %w", key, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID != key {
			s.log.Error("skipping an unreadable agent record", "key", key, "err", err)
			continue
		}
		if r.Node != s.o.Node {
			continue // another node's agent, in a shared (clustered) bucket
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return recs, nil
}

// Close stops admitting agents and stops the running ones, each within its
// stop timeout but no later than ctx's deadline. Their records stay as they
// are, so the next boot restarts them by policy.
func (s *Supervisor) Close(ctx context.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.o.Scheduler.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.grace.Store(int64(max(time.Until(dl)-250*time.Millisecond, 0)))
	}
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		<-s.swept
		// Then the OnEnd hooks of the runs that ended: none starts after
		// this, so none runs against the parts that close after us.
		s.mu.Lock()
		s.hooksClosed = true
		s.mu.Unlock()
		s.hooks.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("agents still stopping at the shutdown deadline")
	}
}

// begin registers a goroutine that runs an agent; false once closing.
func (s *Supervisor) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.runs.Add(1)
	return true
}

func (s *Supervisor) get(id string) (*agent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[id]
	if !ok {
		return nil, fmt.Errorf("agent %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// save writes a's record and publishes typ with data. The caller holds a.mu.
//
// The write is bounded by oxios.BackboneTimeout (a.mu is held meanwhile),
// never by a caller's context: a write abandoned half way may still land,
// and a record stored but reported as failed would run at the next boot.
// Callers with a context check it before they write.
func (s *Supervisor) save(a *agent, typ string, data any) error {
	if s.halted.Load() {
		return ErrClosed
	}
	b, err := s.marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	if _, err := s.kv.Put(ctx, a.id, b); err != nil {
		s.log.Error("write agent record", "agent", a.id, "state", a.rec.State, "err", err)
		return fmt.Errorf("write agent %s: %w", a.id, err)
	}
	a.publishSnap()
	if typ != "" {
		s.publish(a.id, typ, data)
	}
	return nil
}

// marshal encodes a's record, within the largest record: a record over it
// keeps fewer of its tool calls (the latest), then less of its output. The
// caller holds a.mu.
func (s *Supervisor) marshal(a *agent) ([]byte, error) {
	for {
		b, err := json.Marshal(a.rec)
		if err != nil || len(b) <= s.maxRecord {
			return b, err
		}
		switch r := &a.rec; {
		case len(r.ToolCalls) > 0:
			r.ToolCalls = r.ToolCalls[len(r.ToolCalls)/2:]
			if len(r.ToolCalls) == 1 {
				r.ToolCalls = nil
			}
		case len(r.Output) > 4<<10:
			r.Output, r.OutputTruncated = Clip(r.Output, 4<<10), true
		default:
			return nil, &InvalidError{Field: "spec", Msg: fmt.Sprintf("the agent's record would be %d bytes, over the backbone's largest message (%d); shorten its env, args, goal or labels", len(b), s.maxRecord)}
		}
	}
}

func (s *Supervisor) publish(id, typ string, data any) {
	if s.halted.Load() {
		return
	}
	b, _ := json.Marshal(data)
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	if _, err := s.o.Bus.Publish(ctx, bus.Event{Type: typ, AgentID: id, Data: b}); err != nil {
		s.log.Error("publish event", "type", typ, "agent", id, "err", err)
	}
}

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

// Spawn validates spec, persists a queued record and submits it to the
// scheduler. It returns at once; the agent starts when admitted.
func (s *Supervisor) Spawn(ctx context.Context, spec Spec) (Record, error) {
	if err := s.check(ctx, &spec); err != nil {
		return Record{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Record{}, err
	}
	rec := Record{ID: id.String(), Kind: spec.Kind, Name: spec.Name, State: Queued, Node: s.o.Node,
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
func (s *Supervisor) submit(a *agent) {
	a.started = false
	p, _ := scheduler.ParsePriority(a.rec.Spec.Priority)
	s.o.Scheduler.Submit(scheduler.Ticket{ID: a.id, Priority: p, LLM: a.rec.Kind == KindLLM, Start: func() {
		if !s.begin() {
			return
		}
		go s.run(a, start{})
	}})
}

// Get returns the record of agent id.
func (s *Supervisor) Get(id string) (Record, error) {
	a, err := s.get(id)
	if err != nil {
		return Record{}, err
	}
	r := *a.snap.Load()
	s.queued(&r, nil)
	return r, nil
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
	for k, v := range f.Labels {
		if got, ok := r.Spec.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List returns the agents that match f, newest first, at most limit of
// them after cursor (the id of the last one of the previous page); next is
// the cursor of the following page, or "".
func (s *Supervisor) List(f Filter, limit int, cursor string) (recs []Record, next string) {
	s.mu.Lock()
	all := make([]*Record, 0, len(s.agents))
	for _, a := range s.agents {
		if r := a.snap.Load(); f.match(r) && (cursor == "" || r.ID < cursor) {
			all = append(all, r)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b *Record) int { return strings.Compare(b.ID, a.ID) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
		next = all[limit-1].ID
	}
	var waiting map[string]scheduler.Wait
	recs = make([]Record, len(all))
	for i, r := range all {
		recs[i] = *r
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
		return Record{}, err
	}
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	select {
	case <-done:
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
		return Record{}, err
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
		return Record{}, err
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
		prev := a.rec
		a.rec.State, a.rec.Reason = Queued, "restart requested"
		a.rec.EndedAt, a.rec.ExitCode, a.rec.Signal, a.rec.StartedAt = nil, nil, "", nil
		a.rec.Backoffs, a.rec.RecentRestarts = 0, nil
		if err := ctx.Err(); err != nil { // the caller has gone: nothing changes
			return Record{}, err
		}
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

func (s *Supervisor) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Delete removes an ended agent: its record, its log files and, when it
// ran in its own workspace, that workspace.
func (s *Supervisor) Delete(ctx context.Context, id string) error {
	a, err := s.get(id)
	if err != nil {
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
	if err := s.kv.Purge(ctx, a.id); err != nil {
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

// LogPath is where agent id's output goes.
func (s *Supervisor) LogPath(id string) string {
	return filepath.Join(s.o.LogDir, id+".log")
}

// Scheduler returns the scheduler's state.
func (s *Supervisor) Scheduler() scheduler.Snapshot { return s.o.Scheduler.Snapshot() }

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
	if err != nil && !s.halted.Load() && s.ctx.Err() == nil {
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
		if s.ctx.Err() != nil || s.halted.Load() || s.save(a, typ, data) == nil {
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

// Stats are counts over this node's agents.
type Stats struct {
	ByState map[State]int `json:"by_state"`
	Total   int           `json:"total"`
	// Usage sums what the runs started since a time used (see Stats).
	Usage Usage `json:"usage"`
}

// Stats counts the agents by state and sums the usage of the runs that
// started at or after since.
func (s *Supervisor) Stats(since time.Time) Stats {
	st := Stats{ByState: map[State]int{}}
	cost, priced := 0.0, false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		r := a.snap.Load()
		if r == nil {
			continue
		}
		st.Total++
		st.ByState[r.State]++
		if r.StartedAt == nil || r.StartedAt.Before(since) {
			continue
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
	if priced {
		st.Usage.CostUSD = &cost
	}
	return st
}
