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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
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
	// NodeState, if set, says how another node stands (for messages).
	NodeState func(node string) oxios.NodeState
	// Nodes, if set, lists the cluster's nodes: agents are placed on them
	// and taken over from those lost. Without it every agent runs here.
	Nodes func() []oxios.Node
	// Lease is the cluster's lease: a node unknown for that long after
	// this one started is lost.
	Lease time.Duration
	// Drained, if set, says whether this node is drained: it then moves
	// its agents to the others.
	Drained func() bool
	// StillLost, if set, checks afresh that a node judged dead or left is
	// still so, before its agents are taken over.
	StillLost func(ctx context.Context, node string) bool
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

	// remote is the other nodes' agents; watching counts the watch that
	// keeps it and the answers to other nodes under way (remote.go).
	remote   remote
	watching sync.WaitGroup
	serving  *nats.Subscription

	// fenced is set while this node cannot renew its lease: its runs are
	// stopped and none starts (failover.go).
	fenced atomic.Bool
	opened time.Time
}

// agent is the in-memory side of one record.
type agent struct {
	id string
	// mu serializes transitions: a change, its write and its event.
	mu   sync.Mutex
	rec  Record
	snap atomic.Pointer[Record] // the last saved record, for readers
	// rev is the stored record's revision: every write expects it, so a
	// node that lost the agent can never overwrite the record. seen is
	// the same, for the watch to tell this node's writes from others'.
	rev  uint64
	seen atomic.Uint64
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
	// lost: another node owns the agent now; this node stops its run
	// (after lostGrace) and forgets it, writing nothing (failover.go).
	lost      bool
	lostGrace time.Duration
	dropped   bool
	// fence asks the run to stop because this node is fenced; halted says
	// it did, leaving the record as stored, to go on when the node can
	// renew its lease again.
	fence  bool
	halted bool
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
		sweep: make(chan struct{}, 1), swept: make(chan struct{}), maxRecord: 1<<20 - 64<<10,
		remote: remote{recs: map[string]*Record{}, revs: map[string]uint64{}, changed: make(chan struct{})}, opened: time.Now()}
	if mp := o.JS.Conn().MaxPayload(); mp > 128<<10 {
		s.maxRecord = int(mp) - 64<<10
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.grace.Store(int64(time.Hour))
	recs, revs, moved, err := s.load(ctx)
	if err != nil {
		s.cancel()
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("watch %s: %w", Bucket, err)
	}
	if s.serving, err = s.serveRemote(); err != nil {
		w.Stop()
		s.cancel()
		return nil, fmt.Errorf("answer for this node's agents: %w", err)
	}
	s.recover(recs, revs, moved)
	go s.retain()
	if o.Nodes != nil {
		s.watching.Add(2)
		go s.failover()
		go s.drain()
	}
	ready := make(chan struct{})
	s.watching.Add(1)
	go s.watchRemote(w, ready)
	select { // the other nodes' agents are listed from the first request
	case <-ready:
	case <-ctx.Done():
	}
	return s, nil
}

// load reads every record of this node in the bucket, oldest first, with
// their revisions, and the ids of the other nodes' agents.
func (s *Supervisor) load(ctx context.Context) ([]Record, map[string]uint64, map[string]bool, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list agents: %w", err)
	}
	var recs []Record
	revs := map[string]uint64{}
	others := map[string]bool{}
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read agent %s: %w", key, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID != key {
			s.log.Error("skipping an unreadable agent record", "key", key, "err", err)
			continue
		}
		if r.Node != s.o.Node {
			// another node's agent, in a shared (clustered) bucket
			others[r.ID] = true
			continue
		}
		recs = append(recs, r)
		revs[r.ID] = e.Revision()
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return recs, revs, others, nil
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
	s.serving.Unsubscribe()
	if dl, ok := ctx.Deadline(); ok {
		s.grace.Store(int64(max(time.Until(dl)-250*time.Millisecond, 0)))
	}
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		<-s.swept
		s.watching.Wait()
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
	if a.lost {
		return ErrTaken
	}
	b, err := s.marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	if err := s.write(ctx, a, b); err != nil {
		s.log.Error("write agent record", "agent", a.id, "state", a.rec.State, "err", err)
		return fmt.Errorf("write agent %s: %w", a.id, err)
	}
	a.publishSnap()
	if typ != "" {
		s.publish(a.id, typ, data)
	}
	return nil
}

// ErrTaken is a record another node has written since this one last did:
// the agent is no longer this node's, and this node writes it no more.
var ErrTaken = errors.New("the agent's record was written by another node")

// write stores b as a's record if the stored one is still the revision
// this node last wrote (or there is none, for a new agent). A write that
// timed out may have landed: if the stored record is still this node's,
// its revision is taken and the write made again. The caller holds a.mu.
func (s *Supervisor) write(ctx context.Context, a *agent, b []byte) error {
	for range 2 {
		var rev uint64
		var err error
		if a.rev == 0 {
			rev, err = s.kv.Create(ctx, a.id, b)
		} else {
			rev, err = s.kv.Update(ctx, a.id, b, a.rev)
		}
		if err == nil {
			a.rev = rev
			a.seen.Store(rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		e, gerr := s.kv.Get(ctx, a.id)
		if gerr != nil {
			return err
		}
		var stored Record
		if json.Unmarshal(e.Value(), &stored) != nil || stored.Node != s.o.Node {
			a.lost = true
			return ErrTaken
		}
		a.rev = e.Revision()
		a.seen.Store(a.rev)
	}
	a.lost = true
	return ErrTaken
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

func (s *Supervisor) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
