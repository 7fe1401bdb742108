package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// agentSubject is where node answers for its agents.
func agentSubject(node string) string { return "oxios.node." + node + ".agent" }

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

func (r *remote) set(id string, rec *Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec == nil {
		delete(r.recs, id)
	} else {
		r.recs[id] = rec
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// watchRemote keeps the remote index until the supervisor closes; ready is
// closed once the records stored at its start are in.
func (s *Supervisor) watchRemote(w jetstream.KeyWatcher, ready chan<- struct{}) {
	defer s.watching.Done()
	defer w.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				s.remote.set(e.Key(), nil)
				continue
			}
			var r Record
			if json.Unmarshal(e.Value(), &r) != nil || r.ID != e.Key() {
				continue
			}
			if r.Node == s.o.Node {
				// This node's own, known better in s.agents; one another
				// node had is gone from the remote index.
				if _, ok := s.remote.get(r.ID); ok {
					s.remote.set(r.ID, nil)
				}
				continue
			}
			s.remote.set(r.ID, &r)
		}
	}
}

// request is an operation forwarded to the node that runs an agent.
type request struct {
	Op       string         `json:"op"` // get, kill, restart, delete, tail, read
	ID       string         `json:"id"`
	Grace    time.Duration  `json:"grace,omitempty"`
	Lines    int            `json:"lines,omitempty"`
	Cursor   logfile.Cursor `json:"cursor"`
	Wait     time.Duration  `json:"wait,omitempty"`
	Deadline time.Time      `json:"deadline"`
}

// reply is the owner's answer.
type reply struct {
	Record *Record        `json:"record,omitempty"`
	Lines  []string       `json:"lines,omitempty"`
	Data   []byte         `json:"data,omitempty"`
	Cursor logfile.Cursor `json:"cursor"`
	Ended  bool           `json:"ended,omitempty"`
	Err    *wireError     `json:"error,omitempty"`
}

// wireError carries an error's kind, so that the asking node answers its
// client as the owner would have.
type wireError struct {
	Kind  string `json:"kind"` // not_found, conflict, invalid, closed, other
	Msg   string `json:"msg"`
	Field string `json:"field,omitempty"`
}

func toWire(err error) *wireError {
	var inv *InvalidError
	switch {
	case errors.As(err, &inv):
		return &wireError{Kind: "invalid", Msg: inv.Msg, Field: inv.Field}
	case errors.Is(err, ErrNotFound):
		return &wireError{Kind: "not_found", Msg: err.Error()}
	case errors.Is(err, ErrConflict):
		return &wireError{Kind: "conflict", Msg: err.Error()}
	case errors.Is(err, ErrClosed):
		return &wireError{Kind: "closed", Msg: err.Error()}
	}
	return &wireError{Kind: "other", Msg: err.Error()}
}

// remoteError is an owner's error, with its message and its kind's
// sentinel.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func (w *wireError) err(node string) error {
	switch w.Kind {
	case "invalid":
		return &InvalidError{Field: w.Field, Msg: w.Msg}
	case "not_found":
		return &remoteError{w.Msg, ErrNotFound}
	case "conflict":
		return &remoteError{w.Msg, ErrConflict}
	case "closed":
		return &remoteError{"node " + node + " is shutting down", oxios.ErrUnreachable}
	}
	return fmt.Errorf("node %s: %s", node, w.Msg)
}

// forward sends rq to node and returns its reply; a node that does not
// answer in time is ErrUnreachable.
func (s *Supervisor) forward(ctx context.Context, node string, rq request, timeout time.Duration) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	rq.Deadline = dl.Add(-100 * time.Millisecond) // the owner answers before this node gives up
	data, _ := json.Marshal(rq)
	msg, err := s.o.JS.Conn().RequestWithContext(ctx, agentSubject(node), data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return reply{}, fmt.Errorf("agent %s runs on node %s, which does not answer (%s): %w", rq.ID, node, s.nodeState(node), oxios.ErrUnreachable)
		}
		return reply{}, err
	}
	var rp reply
	if err := json.Unmarshal(msg.Data, &rp); err != nil {
		return reply{}, fmt.Errorf("node %s answered what this node cannot read: %w", node, err)
	}
	if rp.Err != nil {
		return rp, rp.Err.err(node)
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
	return s.o.JS.Conn().Subscribe(agentSubject(s.o.Node), func(m *nats.Msg) {
		if !s.beginServe() {
			return
		}
		go func() {
			defer s.watching.Done()
			var rq request
			var rp reply
			if err := json.Unmarshal(m.Data, &rq); err != nil {
				rp.Err = &wireError{Kind: "invalid", Msg: "a forwarded request that is not JSON", Field: "request"}
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
	if _, err := s.get(rq.ID); err != nil {
		return reply{Err: toWire(err)}
	}
	var rp reply
	var err error
	var rec Record
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
		return reply{Err: toWire(err)}
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
