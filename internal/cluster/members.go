package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
)

// Bucket holds the nodes' heartbeats, "hb.NAME", each with a TTL of one
// lease, the drained nodes, "drain.NAME", and each node's last config
// hash, "NAME.config".
const Bucket = "nodes"

const (
	beatPrefix  = "hb."
	drainPrefix = "drain."
)

// forget is how long a dead or departed node stays in the list.
const forget = time.Hour

// Publisher stores events; *bus.Bus is one.
type Publisher interface {
	Publish(ctx context.Context, ev bus.Event) (bus.Event, error)
	PublishOnce(ctx context.Context, ev bus.Event, key string) (bus.Event, error)
}

// Options configure the membership of this node.
type Options struct {
	JS       jetstream.JetStream
	Replicas int
	// Self is this node's heartbeat: Name, Address, Route, Version,
	// Labels and Instance; the rest is filled in.
	Self oxios.Node
	// Lease is how long a node that stops beating stays alive.
	Lease time.Duration
	// Beat is how often it beats; 0 is a fifth of the lease.
	Beat time.Duration
	// Fence makes a node that cannot renew its heartbeat for a lease (less
	// a beat) stop its agents (OnFence): on a cluster, the other nodes take
	// them over. A single node has no one to hand them to, and never fences.
	Fence  bool
	Bus    Publisher
	Logger *slog.Logger
}

// TakenError is a node name held by another live node.
type TakenError struct {
	Name    string
	Address string
	Ago     time.Duration
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("node name %q is held by a live node at %s (its last heartbeat %s ago): give this daemon another name (node in config.toml), or stop that node first",
		e.Name, e.Address, e.Ago.Round(time.Millisecond))
}

// Members keeps this node's heartbeat and watches everyone's. Create it
// with Join.
type Members struct {
	o    Options
	kv   jetstream.KeyValue
	beat time.Duration
	log  *slog.Logger
	load atomic.Pointer[func() (running, free, limit int)]

	mu    sync.Mutex
	self  oxios.Node
	rev   uint64 // of this node's heartbeat
	nodes map[string]*member
	lost  bool // another node took this one's name
	// renewed is when the last heartbeat that was stored was sent; fenced
	// is set while this node's agents are stopped because it could not
	// renew it for a lease.
	renewed           time.Time
	fenced            bool
	drained           map[string]bool
	onFence, onRejoin func()

	cancel context.CancelFunc
	wg     sync.WaitGroup
	whois  *nats.Subscription
}

type member struct {
	node  oxios.Node
	seen  time.Time // when this node last heard from it (its own clock)
	rev   uint64    // of its last heartbeat heard
	state oxios.NodeState
}

// Join claims this node's name, refusing it while another live node holds
// it (*TakenError), publishes node.joined, and keeps beating and watching
// until Leave.
func Join(ctx context.Context, o Options) (*Members, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := o.JS.CreateOrUpdateKeyValue(ctx, BucketConfig(o.Replicas, o.Lease))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	if o.Beat <= 0 {
		o.Beat = o.Lease / 5
	}
	m := &Members{o: o, kv: kv, beat: o.Beat, log: o.Logger, nodes: map[string]*member{}, drained: map[string]bool{}}
	m.self = o.Self
	m.self.StartedAt = time.Now().UTC().Truncate(time.Millisecond)
	m.self.State = oxios.NodeAlive
	sent := time.Now()
	if m.rev, err = m.claim(ctx); err != nil {
		return nil, err
	}
	m.renewed = sent
	m.self.BeatAt = time.Now().UTC()
	m.nodes[m.self.Name] = &member{node: m.self, seen: time.Now(), state: oxios.NodeAlive}
	wctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	w, err := kv.WatchFiltered(ctx, []string{beatPrefix + "*", drainPrefix + "*"})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", Bucket, err)
	}
	if m.whois, err = m.answerWhois(); err != nil {
		w.Stop()
		cancel()
		return nil, err
	}
	m.wg.Add(3)
	go m.watch(wctx, w)
	go m.keepBeating(wctx)
	go m.watchLease(wctx)
	m.event(ctx, "node.joined", m.self)
	return m, nil
}

// BucketConfig is the nodes bucket: one value a key, per-key TTLs, and
// the markers of expired keys kept for a lease so that watchers see them.
func BucketConfig(replicas int, lease time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		LimitMarkerTTL: max(lease, time.Second)}
}

// claim writes this node's first heartbeat, unless a live node of another
// home holds the name. A heartbeat of this home's (the daemon before this
// one, killed less than a lease ago) or of a node that left is taken over.
func (m *Members) claim(ctx context.Context) (uint64, error) {
	key := beatPrefix + m.self.Name
	for range 3 {
		e, err := m.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			b, _ := json.Marshal(m.heartbeat())
			rev, err := m.kv.Create(ctx, key, b, jetstream.KeyTTL(m.o.Lease))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another daemon of this name, this instant: look again
			}
			if err != nil {
				return 0, fmt.Errorf("claim node name %q: %w", m.self.Name, err)
			}
			return rev, nil
		case err != nil:
			return 0, fmt.Errorf("claim node name %q: %w", m.self.Name, err)
		}
		var held oxios.Node
		if json.Unmarshal(e.Value(), &held) == nil && held.Instance != m.self.Instance && !held.Left {
			return 0, &TakenError{Name: m.self.Name, Address: held.Address, Ago: time.Since(e.Created())}
		}
		rev, err := m.put(ctx, m.heartbeat(), e.Revision())
		if isWrongSequence(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("claim node name %q: %w", m.self.Name, err)
		}
		return rev, nil
	}
	return 0, fmt.Errorf("claim node name %q: another daemon keeps writing it", m.self.Name)
}

// heartbeat is this node's entry as of now.
func (m *Members) heartbeat() oxios.Node {
	n := m.self
	n.BeatAt = time.Now().UTC()
	if f := m.load.Load(); f != nil {
		n.Running, n.FreeSlots, n.MaxRunning = (*f)()
	}
	n.State, n.SeenAgo, n.Drained = "", "", false
	return n
}

// put writes n as this node's heartbeat with a TTL of one lease, if the
// key's revision is still rev.
func (m *Members) put(ctx context.Context, n oxios.Node, rev uint64) (uint64, error) {
	b, _ := json.Marshal(n)
	ack, err := m.o.JS.Publish(ctx, "$KV."+Bucket+"."+beatPrefix+n.Name, b,
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(m.o.Lease))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func isWrongSequence(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == 10164)
}

// SetLoad sets what each heartbeat says of this node's agents: how many
// run, how many more its scheduler admits, and its limit.
func (m *Members) SetLoad(f func() (running, free, limit int)) { m.load.Store(&f) }

// OnFence sets what stops this node's agents when it cannot renew its
// heartbeat (see Options.Fence), and onRejoin what takes back those still
// its own once it can again. Both are called on their own goroutine, one
// at a time.
func (m *Members) OnFence(fence, rejoin func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onFence, m.onRejoin = fence, rejoin
}

// Fenced reports whether this node has stopped its agents because it
// could not renew its heartbeat.
func (m *Members) Fenced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fenced
}

// watchLease fences this node once its last stored heartbeat was sent a
// lease less one beat ago: the other nodes can declare it dead no sooner
// than a lease after that, so its agents stop before they are started
// elsewhere. A daemon paused (SIGSTOP) past that fences itself first
// thing when it runs again: the check is on the monotonic clock, and runs
// four times a beat.
func (m *Members) watchLease(ctx context.Context) {
	defer m.wg.Done()
	if !m.o.Fence {
		return
	}
	t := time.NewTicker(max(m.beat/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.checkLease(time.Now())
		}
	}
}

// checkLease fences this node if its heartbeat has not been renewed for
// a lease less one beat.
func (m *Members) checkLease(now time.Time) {
	if !m.o.Fence {
		return
	}
	m.mu.Lock()
	if m.fenced || m.lost || now.Sub(m.renewed) < m.o.Lease-m.beat {
		m.mu.Unlock()
		return
	}
	m.fenced = true
	fence, since := m.onFence, m.renewed
	m.mu.Unlock()
	m.log.Error("this node could not renew its heartbeat for a lease: it stops its agents (fenced), which the other nodes take over",
		"node", m.self.Name, "last_renewed", since.UTC().Format(time.RFC3339Nano), "lease", m.o.Lease)
	if fence != nil {
		fence()
	}
}

// keepBeating writes this node's heartbeat every beat and judges the
// others' at every half beat.
func (m *Members) keepBeating(ctx context.Context) {
	defer m.wg.Done()
	beat := time.NewTicker(m.beat)
	judge := time.NewTicker(m.beat / 2)
	defer beat.Stop()
	defer judge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			m.beatOnce(ctx)
		case <-judge.C:
			m.judge(ctx, time.Now())
		}
	}
}

func (m *Members) beatOnce(ctx context.Context) {
	// A daemon that was paused past its lease fences itself before it
	// writes anything.
	m.checkLease(time.Now())
	m.mu.Lock()
	if m.lost {
		m.mu.Unlock()
		return
	}
	n, rev := m.heartbeat(), m.rev
	m.mu.Unlock()
	bctx, cancel := context.WithTimeout(ctx, m.beat)
	defer cancel()
	sent := time.Now()
	nrev, taken, err := m.putOwn(bctx, n, rev)
	if errors.Is(err, errExpired) {
		// Its heartbeat expired (the cluster saw it dead): it joins again
		// under its name, as a daemon of this home after a crash does.
		nrev, err = m.claim(bctx)
		var te *TakenError
		if errors.As(err, &te) {
			taken, err = true, nil
		}
	}
	m.mu.Lock()
	var rejoin func()
	switch {
	case taken:
		// Written by someone else: this node's name was taken while it
		// could not beat (it was declared dead).
		m.lost = true
		m.log.Error("this node's name was taken by another daemon while this one could not renew its heartbeat; it no longer beats", "node", m.self.Name)
	case err == nil:
		m.rev, m.renewed = nrev, sent
		if m.fenced {
			m.fenced = false
			rejoin = m.onRejoin
			m.log.Warn("this node renewed its heartbeat again: it takes back the agents still its own", "node", m.self.Name)
		}
	case ctx.Err() == nil:
		m.log.Warn("heartbeat not written", "err", err)
	}
	m.mu.Unlock()
	if rejoin != nil {
		rejoin()
	}
}

// errExpired is a heartbeat that is no longer stored: its TTL ran out.
var errExpired = errors.New("this node's heartbeat expired")

// putOwn writes n as this node's heartbeat over revision rev. A beat
// that timed out may have landed after all: if the stored heartbeat is
// this run's own, the write is made again over its revision. Only another
// daemon's heartbeat under this name means the name is taken.
func (m *Members) putOwn(ctx context.Context, n oxios.Node, rev uint64) (uint64, bool, error) {
	nrev, err := m.put(ctx, n, rev)
	if !isWrongSequence(err) {
		return nrev, false, err
	}
	e, err := m.kv.Get(ctx, beatPrefix+n.Name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, errExpired
	}
	if err != nil {
		return 0, false, err
	}
	var held oxios.Node
	if json.Unmarshal(e.Value(), &held) != nil || held.Instance != n.Instance || !held.StartedAt.Equal(n.StartedAt) {
		return 0, true, nil
	}
	nrev, err = m.put(ctx, n, e.Revision())
	return nrev, false, err
}

// watch follows every node's heartbeat.
func (m *Members) watch(ctx context.Context, w jetstream.KeyWatcher) {
	defer m.wg.Done()
	Follow(ctx, w, nil, func(e jetstream.KeyValueEntry) { m.update(ctx, e) })
}

// update takes one heartbeat, or the marker of one that expired or was
// deleted.
func (m *Members) update(ctx context.Context, e jetstream.KeyValueEntry) {
	if d, ok := strings.CutPrefix(e.Key(), drainPrefix); ok {
		m.mu.Lock()
		m.drained[d] = e.Operation() == jetstream.KeyValuePut
		m.mu.Unlock()
		return
	}
	name := strings.TrimPrefix(e.Key(), beatPrefix)
	m.mu.Lock()
	mb := m.nodes[name]
	if e.Operation() != jetstream.KeyValuePut {
		if mb == nil || mb.state == oxios.NodeDead || mb.state == oxios.NodeLeft || name == m.self.Name {
			m.mu.Unlock()
			return
		}
		// Expired: no beat for a whole lease.
		mb.state = oxios.NodeDead
		n := mb.node
		m.mu.Unlock()
		m.event(ctx, "node.dead", n)
		return
	}
	var n oxios.Node
	if err := json.Unmarshal(e.Value(), &n); err != nil || n.Name != name {
		m.mu.Unlock()
		return
	}
	if name == m.self.Name {
		m.mu.Unlock()
		return // this node's own, known better here
	}
	if mb == nil {
		mb = &member{}
		m.nodes[name] = mb
	}
	was := mb.state
	if e.Revision() < mb.rev {
		m.mu.Unlock()
		return // older than one read afresh (see confirm)
	}
	mb.node, mb.seen, mb.rev = n, time.Now(), e.Revision()
	mb.state = oxios.NodeAlive
	if n.Left {
		mb.state = oxios.NodeLeft
	}
	left := mb.state == oxios.NodeLeft
	m.mu.Unlock()
	if was != oxios.NodeLeft && left {
		m.log.Info("node left the cluster", "node", name)
	}
}

// judge moves nodes that missed beats to suspect, and those silent for a
// lease to dead, and forgets the long gone. Before it does, it reads the
// node's heartbeat afresh: a watch stalls for seconds when the bucket's
// stream loses its leader, and a node is not judged on a stalled watch.
func (m *Members) judge(ctx context.Context, now time.Time) {
	type change struct {
		typ string
		n   oxios.Node
	}
	m.mu.Lock()
	var doubtful []string
	for name, mb := range m.nodes {
		if name != m.self.Name && mb.state != oxios.NodeDead && mb.state != oxios.NodeLeft && now.Sub(mb.seen) > 2*m.beat {
			doubtful = append(doubtful, name)
		}
	}
	m.mu.Unlock()
	unsure := map[string]bool{}
	for _, name := range doubtful {
		if !m.confirm(ctx, name) {
			unsure[name] = true
		}
	}
	now = time.Now()
	var changes []change
	m.mu.Lock()
	for name, mb := range m.nodes {
		if name == m.self.Name {
			continue
		}
		age := now.Sub(mb.seen)
		switch {
		case (mb.state == oxios.NodeDead || mb.state == oxios.NodeLeft) && age > forget:
			delete(m.nodes, name)
		case mb.state == oxios.NodeDead || mb.state == oxios.NodeLeft:
		case age > m.o.Lease && !unsure[name]:
			mb.state = oxios.NodeDead
			changes = append(changes, change{"node.dead", mb.node})
		case age > 2*m.beat && mb.state == oxios.NodeAlive:
			mb.state = oxios.NodeSuspect
			changes = append(changes, change{"node.suspect", mb.node})
		}
	}
	m.mu.Unlock()
	for _, c := range changes {
		m.log.Warn(c.typ, "node", c.n.Name, "last_beat", c.n.BeatAt)
		m.event(ctx, c.typ, c.n)
	}
}

// confirm reads node name's heartbeat from the bucket: a newer one than
// the watch brought counts as heard now; one that is gone (its TTL ran
// out) makes the node dead. It reports false when the bucket cannot be
// read: the node is then not judged dead on this node's view alone.
func (m *Members) confirm(ctx context.Context, name string) bool {
	n, rev, gone, err := m.reread(ctx, name)
	if err != nil {
		return false
	}
	if !gone {
		m.mu.Lock()
		m.heardLocked(name, n, rev)
		m.mu.Unlock()
	}
	return true
}

// Lost reports whether node name is still dead or gone, by its heartbeat
// read afresh: a node judged dead on a watch that lagged, or one that has
// come back since, is alive again. When the heartbeat cannot be read, or
// this node cannot renew its own, it is not taken for lost (its agents
// are not taken over on a guess).
func (m *Members) Lost(ctx context.Context, name string) bool {
	m.mu.Lock()
	blind := time.Since(m.renewed) > 2*m.beat
	m.mu.Unlock()
	if blind {
		// This node cannot renew its own heartbeat either (the bucket's
		// stream is electing a leader, or this node is cut off): the
		// others' silence tells nothing, and no agent is taken over on it.
		return false
	}
	n, rev, gone, err := m.reread(ctx, name)
	switch {
	case err != nil:
		return false
	case gone:
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mb := m.nodes[name]
	if mb == nil {
		return n.Left
	}
	m.heardLocked(name, n, rev)
	return mb.state == oxios.NodeDead || mb.state == oxios.NodeLeft
}

// reread reads node name's heartbeat from the bucket, within a beat;
// gone says it is not there (its TTL ran out) or unreadable.
func (m *Members) reread(ctx context.Context, name string) (n oxios.Node, rev uint64, gone bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, m.beat)
	defer cancel()
	e, err := m.kv.Get(gctx, beatPrefix+name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return n, 0, true, nil
	case err != nil:
		return n, 0, false, err
	case json.Unmarshal(e.Value(), &n) != nil:
		return n, 0, true, nil
	}
	return n, e.Revision(), false, nil
}

// heardLocked takes heartbeat n (at rev) of node name, read afresh, if it
// is newer than the last one heard: the node is alive (or left). The
// caller holds m.mu.
func (m *Members) heardLocked(name string, n oxios.Node, rev uint64) {
	mb := m.nodes[name]
	if mb == nil || rev <= mb.rev {
		return
	}
	mb.node, mb.seen, mb.rev = n, time.Now(), rev
	mb.state = oxios.NodeAlive
	if n.Left {
		mb.state = oxios.NodeLeft
	}
}

// event publishes typ about n (see publish) on its own goroutine: a
// backbone without a majority must not hold up the judging of the others.
func (m *Members) event(ctx context.Context, typ string, n oxios.Node) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.publish(ctx, typ, n)
	}()
}

// publish stores typ about n once in the cluster, however many nodes see
// it: its key names the node's run (its start) and, for a suspicion, the
// beat it was suspected after.
func (m *Members) publish(ctx context.Context, typ string, n oxios.Node) {
	if m.o.Bus == nil {
		return
	}
	data, _ := json.Marshal(map[string]any{"node": n.Name, "address": n.Address, "started_at": n.StartedAt, "last_beat": n.BeatAt})
	key := fmt.Sprintf("%s.%s.%d", typ, n.Name, n.StartedAt.UnixNano())
	if typ == "node.suspect" {
		key += fmt.Sprintf(".%d", n.BeatAt.UnixNano())
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oxios.BackboneTimeout)
	defer cancel()
	if _, err := m.o.Bus.PublishOnce(pctx, bus.Event{Type: typ, Data: data}, key); err != nil {
		m.log.Warn("publish node event", "type", typ, "node", n.Name, "err", err)
	}
}

// List returns every node known, by name, with its state as seen here.
func (m *Members) List() []oxios.Node {
	now := time.Now()
	m.mu.Lock()
	out := make([]oxios.Node, 0, len(m.nodes))
	for name, mb := range m.nodes {
		n := mb.node
		if name == m.self.Name {
			n = m.heartbeat()
			n.BeatAt = m.renewed.UTC()
			switch {
			case m.lost:
				n.State = oxios.NodeDead
			case m.fenced:
				n.State = oxios.NodeSuspect
			default:
				n.State = oxios.NodeAlive
			}
		} else {
			n.State = mb.state
			n.SeenAgo = now.Sub(mb.seen).Round(time.Millisecond).String()
		}
		n.Drained = m.drained[name]
		out = append(out, n)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b oxios.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// State is node name's state as seen here ("" if unknown).
func (m *Members) State(name string) oxios.NodeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb := m.nodes[name]; mb != nil {
		return mb.state
	}
	return ""
}

// Self is this node's name.
func (m *Members) Self() string { return m.self.Name }

// Drained reports whether node name is drained.
func (m *Members) Drained(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drained[name]
}

// SetDrained drains node name (it takes no new agents and moves its
// agents to the others) or undrains it. Draining the last live node that
// is not drained is refused: its agents would have nowhere to go.
func (m *Members) SetDrained(ctx context.Context, name string, on bool) (oxios.Node, error) {
	find := func() (oxios.Node, bool) {
		for _, n := range m.List() {
			if n.Name == name {
				return n, true
			}
		}
		return oxios.Node{}, false
	}
	n, ok := find()
	if !ok {
		return oxios.Node{}, &oxios.NotFoundError{What: "node " + name}
	}
	if on {
		if n.State != oxios.NodeAlive && n.State != oxios.NodeSuspect {
			return oxios.Node{}, fmt.Errorf("node %s is %s: its agents are taken over by the other nodes already; there is nothing to drain: %w", name, n.State, oxios.ErrConflict)
		}
		others := 0
		for _, o := range m.List() {
			if o.Name != name && o.State == oxios.NodeAlive && !o.Drained {
				others++
			}
		}
		if others == 0 {
			return oxios.Node{}, fmt.Errorf("node %s is the last live node that takes agents: draining it would leave its agents nowhere to run; start or undrain another node first: %w", name, oxios.ErrConflict)
		}
		b, _ := json.Marshal(map[string]any{"at": time.Now().UTC()})
		if _, err := m.kv.Put(ctx, drainPrefix+name, b); err != nil {
			return oxios.Node{}, fmt.Errorf("drain node %s: %w", name, err)
		}
	} else if err := m.kv.Purge(ctx, drainPrefix+name); err != nil {
		return oxios.Node{}, fmt.Errorf("undrain node %s: %w", name, err)
	}
	m.mu.Lock()
	m.drained[name] = on
	m.mu.Unlock()
	n, _ = find()
	return n, nil
}

// Leave stops beating and says this node left: its heartbeat is marked
// left (so the name is free at once) and node.left is published.
func (m *Members) Leave(ctx context.Context) {
	m.whois.Unsubscribe()
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	lost, rev := m.lost, m.rev
	n := m.heartbeat()
	m.mu.Unlock()
	if lost {
		return
	}
	n.Left = true
	if _, taken, err := m.putOwn(ctx, n, rev); err != nil || taken {
		m.log.Warn("heartbeat not marked left", "err", err, "taken", taken)
	}
	m.publish(ctx, "node.left", n)
}

// WhoHolds asks the cluster, over plain NATS (no JetStream needed), which
// live node holds name; a node of another home than instance is a
// *TakenError. No answer within a moment means none.
func WhoHolds(ctx context.Context, nc *nats.Conn, name, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, whoisWait)
	defer cancel()
	var msg *nats.Msg
	for {
		var err error
		if msg, err = nc.RequestWithContext(ctx, Subject(name, "whois"), nil); err == nil {
			break
		}
		// No one may hold it, or the holder's interest has not crossed
		// the routes just made: asked again until the wait is over. Then
		// the claim in the nodes bucket decides.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	var n oxios.Node
	if json.Unmarshal(msg.Data, &n) != nil || n.Instance == instance || n.Left {
		return nil
	}
	return &TakenError{Name: name, Address: n.Address, Ago: time.Since(n.BeatAt)}
}

// whoisWait bounds the wait for the holder of a name to answer.
const whoisWait = 500 * time.Millisecond

// answerWhois answers WhoHolds for this node's name with its heartbeat.
func (m *Members) answerWhois() (*nats.Subscription, error) {
	return m.o.JS.Conn().Subscribe(Subject(m.self.Name, "whois"), func(msg *nats.Msg) {
		m.mu.Lock()
		n := m.heartbeat()
		lost := m.lost
		m.mu.Unlock()
		if lost {
			return
		}
		b, _ := json.Marshal(n)
		msg.Respond(b)
	})
}
