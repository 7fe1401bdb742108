package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/logfile"
	"github.com/oxios/oxios/internal/oxios"
)

// Every node answers for the whole cluster's agents. The records of the
// other nodes' agents are kept in memory by a watch of the shared agents
// bucket, as this node's own are, so lists never scan storage. An
// operation on another node's agent (get, kill, restart, delete, its log)
// is forwarded over NATS request/reply to the node that runs it, on
// "oxios.node.NAME.agent"; a wait is answered here, from the watch, once
// the stored record has ended.

// forwardTimeout bounds a forwarded operation that does not wait (get,
// restart, delete, a log's tail); killTimeout one that waits for the end.
const (
	forwardTimeout = 5 * time.Second
	killTimeout    = 2 * time.Minute
	// maxLogReply bounds the log bytes of one reply, under any NATS
	// server's largest message (1 MiB by default).
	maxLogReply = 256 << 10
)

// remote is the other nodes' agents, as stored.
type remote struct {
	mu   sync.Mutex
	recs map[string]*Record
	// revs are the records' revisions, for the compare-and-set that takes
	// over an agent of a lost node.
	revs map[string]uint64
	// changed is closed and replaced at every change (for waits).
	changed chan struct{}
}

func (r *remote) get(id string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.recs[id]; ok {
		return *rec, true
	}
	return Record{}, false
}

func (r *remote) set(id string, rec *Record, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec == nil {
		delete(r.recs, id)
		delete(r.revs, id)
	} else {
		r.recs[id], r.revs[id] = rec, rev
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// setIfAbsent adds a record another node just answered with, unless the
// watch has brought it (or a later one) already.
func (r *remote) setIfAbsent(id string, rec *Record) {
	r.mu.Lock()
	_, ok := r.recs[id]
	r.mu.Unlock()
	if !ok {
		r.set(id, rec, 0)
	}
}

// watchRemote keeps the remote index until the supervisor closes; ready is
// closed once the records stored at its start are in.
func (s *Supervisor) watchRemote(w jetstream.KeyWatcher, ready chan<- struct{}) {
	defer s.watching.Done()
	cluster.Follow(s.ctx, w, ready, s.remoteUpdate)
}

// remoteUpdate takes one change of the agents bucket into the remote
// index.
func (s *Supervisor) remoteUpdate(e jetstream.KeyValueEntry) {
	if a, err := s.get(e.Key()); err == nil {
		// This node's own write, known better in s.agents, is not decoded
		// again. A later revision is another node's: one that took the
		// agent over while this node was cut off or paused.
		if e.Revision() <= a.seen.Load() || e.Operation() != jetstream.KeyValuePut {
			return
		}
		var r Record
		if json.Unmarshal(e.Value(), &r) != nil || r.ID != e.Key() || r.Node == s.o.Node {
			return
		}
		s.lose(a, &r, e.Revision(), 0)
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := s.remote.get(e.Key()); ok {
			s.remote.set(e.Key(), nil, 0)
		}
		return
	}
	var r Record
	if json.Unmarshal(e.Value(), &r) != nil || r.ID != e.Key() {
		return
	}
	if r.Node == s.o.Node {
		// This node's own, known better in s.agents; one another node had
		// is gone from the remote index.
		if _, ok := s.remote.get(r.ID); ok {
			s.remote.set(r.ID, nil, 0)
		}
		return
	}
	s.remote.mu.Lock()
	older := e.Revision() < s.remote.revs[r.ID] // read afresh meanwhile (failover.go)
	s.remote.mu.Unlock()
	if !older {
		s.remote.set(r.ID, &r, e.Revision())
	}
}

// request is an operation forwarded to the node that runs an agent.
type request struct {
	Op       string         `json:"op"` // get, kill, restart, delete, tail, read, spawn, adopt
	ID       string         `json:"id"`
	Grace    time.Duration  `json:"grace,omitempty"`
	Lines    int            `json:"lines,omitempty"`
	Cursor   logfile.Cursor `json:"cursor"`
	Wait     time.Duration  `json:"wait,omitempty"`
	Deadline time.Time      `json:"deadline"`
	// Spawn: the spec as its caller gave it, whether the caller may widen
	// its sandbox, and why it was placed here.
	Spec       *Spec  `json:"spec,omitempty"`
	Restricted bool   `json:"restricted,omitempty"`
	Placed     string `json:"placed,omitempty"`
	// Adopt: the revision of the record the draining node hands over.
	Rev  uint64 `json:"rev,omitempty"`
	From string `json:"from,omitempty"`
}

// reply is the owner's answer.
type reply struct {
	Record *Record          `json:"record,omitempty"`
	Lines  []string         `json:"lines,omitempty"`
	Data   []byte           `json:"data,omitempty"`
	Cursor logfile.Cursor   `json:"cursor"`
	Ended  bool             `json:"ended,omitempty"`
	Err    *oxios.WireError `json:"error,omitempty"`
}

// forward sends rq to node and returns its reply; a node that does not
// answer in time is ErrUnreachable.
func (s *Supervisor) forward(ctx context.Context, node string, rq request, timeout time.Duration) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	rq.Deadline = dl.Add(-100 * time.Millisecond) // the owner answers before this node gives up
	var rp reply
	who := fmt.Sprintf("agent %s runs on node %s (%s)", rq.ID, node, s.nodeState(node))
	if err := cluster.Ask(ctx, s.o.JS.Conn(), node, "agent", rq, &rp, who); err != nil {
		return reply{}, err
	}
	if rp.Err != nil {
		return rp, rp.Err.Err(node)
	}
	return rp, nil
}

// nodeState says how node stands, for messages.
func (s *Supervisor) nodeState(node string) string {
	if s.o.NodeState == nil {
		return "its state is unknown"
	}
	if st := s.o.NodeState(node); st != "" {
		return "it is " + string(st)
	}
	return "it is not in the cluster"
}

// serveRemote answers the operations other nodes forward for this node's
// agents, each on its own goroutine, until the supervisor closes.
func (s *Supervisor) serveRemote() (*nats.Subscription, error) {
	return s.o.JS.Conn().Subscribe(cluster.Subject(s.o.Node, "agent"), func(m *nats.Msg) {
		if !s.beginServe() {
			return
		}
		go func() {
			defer s.watching.Done()
			var rq request
			var rp reply
			if err := json.Unmarshal(m.Data, &rq); err != nil {
				rp.Err = &oxios.WireError{Kind: "invalid", Msg: "a forwarded request that is not JSON", Field: "request"}
			} else {
				rp = s.answer(rq)
			}
			b, _ := json.Marshal(rp)
			m.Respond(b)
		}()
	})
}

// beginServe registers an answer under way; false once closing.
func (s *Supervisor) beginServe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.watching.Add(1)
	return true
}

// answer runs one forwarded operation on this node's agent.
func (s *Supervisor) answer(rq request) reply {
	ctx, cancel := context.WithDeadline(s.ctx, rq.Deadline)
	defer cancel()
	var rp reply
	var err error
	var rec Record
	switch rq.Op {
	case "spawn":
		if rq.Spec == nil {
			return reply{Err: oxios.ToWire(invalid("spec", "a forwarded spawn without a spec"))}
		}
		if rq.Restricted {
			ctx = Restricted(ctx)
		}
		rec, err = s.spawnHere(ctx, *rq.Spec, rq.Placed)
	case "adopt":
		rec, err = s.adopt(ctx, rq)
	}
	if rq.Op == "spawn" || rq.Op == "adopt" {
		if err != nil {
			return reply{Err: oxios.ToWire(err)}
		}
		return reply{Record: &rec}
	}
	if _, err := s.get(rq.ID); err != nil {
		return reply{Err: oxios.ToWire(err)}
	}
	switch rq.Op {
	case "get":
		rec, err = s.Get(rq.ID)
	case "kill":
		rec, err = s.Kill(ctx, rq.ID, rq.Grace)
	case "restart":
		rec, err = s.Restart(ctx, rq.ID)
	case "delete":
		err = s.Delete(ctx, rq.ID)
	case "tail":
		rp.Lines, rp.Cursor, err = s.LogTail(ctx, rq.ID, rq.Lines)
	case "read":
		rp.Data, rp.Cursor, rp.Ended, err = s.LogRead(ctx, rq.ID, rq.Cursor, rq.Wait)
	default:
		err = &InvalidError{Field: "op", Msg: fmt.Sprintf("unknown forwarded operation %q", rq.Op)}
	}
	if err != nil {
		return reply{Err: oxios.ToWire(err)}
	}
	if rec.ID != "" {
		rp.Record = &rec
	}
	return rp
}

// owner returns the stored record of another node's agent id.
func (s *Supervisor) owner(id string) (Record, error) {
	if r, ok := s.remote.get(id); ok {
		return r, nil
	}
	return Record{}, fmt.Errorf("agent %s: %w", id, ErrNotFound)
}

// remoteList adds the other nodes' agents that match f to all.
func (s *Supervisor) remoteList(f Filter, cursor string, all []*Record) []*Record {
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	for _, r := range s.remote.recs {
		if f.match(r) && (cursor == "" || r.ID < cursor) {
			all = append(all, r)
		}
	}
	return all
}

// waitRemote waits until another node's agent id has ended, as stored.
func (s *Supervisor) waitRemote(ctx context.Context, id string) (Record, error) {
	for {
		s.remote.mu.Lock()
		r, ok := s.remote.recs[id]
		changed := s.remote.changed
		s.remote.mu.Unlock()
		if !ok {
			return Record{}, fmt.Errorf("agent %s: %w", id, ErrNotFound)
		}
		if r.State.Terminal() {
			return *r, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return *r, nil
		case <-s.ctx.Done():
			return *r, nil
		}
	}
}
