// Package approval holds human approvals of agents' tool calls: a call the
// policy marks "ask" waits, persisted in the approvals bucket, until an
// operator approves or rejects it, or its timeout rejects it.
package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/bus"
)

// State of an approval.
type State = oxios.ApprovalState

// The states; pending is the only one that changes.
const (
	Pending  = oxios.Pending
	Approved = oxios.Approved
	Rejected = oxios.Rejected
)

// Approval is one request for a human's decision.
type Approval = oxios.Approval

// Errors callers test for.
var (
	ErrNotFound   = errors.New("no such approval")
	ErrNotPending = errors.New("the approval is not pending")
)

// Bucket holds the approvals.
const Bucket = "approvals"

// Publisher stores events; *bus.Bus is one.
type Publisher interface {
	Publish(ctx context.Context, ev bus.Event) (bus.Event, error)
}

// Auditor appends to the audit trail; *audit.Log is one.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
}

// Manager keeps approvals: in the bucket, and in memory kept current by a
// watch, which also wakes the calls waiting for a decision.
type Manager struct {
	kv    jetstream.KeyValue
	bus   Publisher
	audit Auditor

	mu      sync.Mutex
	all     map[string]stored
	waiters map[string][]chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
}

type stored struct {
	Approval
	rev uint64
}

// Open opens the approvals bucket.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, pub Publisher, aud Auditor) (*Manager, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	m := &Manager{kv: kv, bus: pub, audit: aud, all: map[string]stored{}, waiters: map[string][]chan struct{}{}, done: make(chan struct{})}
	wctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, err
	}
	loaded := make(chan struct{})
	go m.follow(w, loaded)
	select {
	case <-loaded:
	case <-ctx.Done():
		m.Close()
		return nil, ctx.Err()
	}
	return m, nil
}

func (m *Manager) follow(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer close(m.done)
	first := true
	for e := range w.Updates() {
		if e == nil {
			if first {
				first = false
				close(loaded)
			}
			continue
		}
		m.mu.Lock()
		if e.Operation() != jetstream.KeyValuePut {
			delete(m.all, e.Key())
		} else {
			var a Approval
			if json.Unmarshal(e.Value(), &a) == nil {
				m.all[a.ID] = stored{Approval: a, rev: e.Revision()}
			}
		}
		for _, ch := range m.waiters[e.Key()] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		m.mu.Unlock()
	}
}

// Close stops the watch.
func (m *Manager) Close() {
	m.stop()
	<-m.done
}

// ID is the approval id of an agent's tool call: from the agent, the
// call's place in the run (step and index, which a run resumed after a
// daemon restart repeats) and what is called, its arguments taken as
// parsed JSON (a resumed run re-encodes them: spacing and key order must
// not make it another call) — never from the provider's call id, which
// some servers leave empty or reuse.
func ID(agentID, position, tool, args string) string {
	h := sha256.Sum256([]byte(agentID + "\x00" + position + "\x00" + tool + "\x00" + canonical(args)))
	return hex.EncodeToString(h[:16])
}

// canonical is JSON text in one form: compact, object keys sorted,
// numbers as written. Text that is not JSON is kept as it is.
func canonical(args string) string {
	dec := json.NewDecoder(strings.NewReader(args))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return args
	}
	b, err := json.Marshal(v)
	if err != nil {
		return args
	}
	return string(b)
}

func (m *Manager) get(id string) (stored, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.all[id]
	return s, ok
}

// Request asks for a decision on an agent's tool call and waits for it, or
// for ctx. A timeout above zero rejects the call when it passes. The
// request is kept (pending) if ctx ends first: an agent resumed after a
// daemon restart waits on it again.
func (m *Manager) Request(ctx context.Context, agentID, position, tool, args string, timeout time.Duration) (Approval, error) {
	id := ID(agentID, position, tool, args)
	s, ok := m.get(id)
	if !ok {
		a := Approval{ID: id, AgentID: agentID, Tool: tool, Args: args, State: Pending, CreatedAt: time.Now().UTC()}
		if timeout > 0 {
			exp := a.CreatedAt.Add(timeout)
			a.ExpiresAt = &exp
		}
		b, _ := json.Marshal(a)
		rev, err := m.kv.Create(ctx, id, b)
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return a, fmt.Errorf("store approval: %w", err)
		}
		if err != nil { // made meanwhile: take it as stored
			e, gerr := m.kv.Get(ctx, id)
			if gerr != nil {
				return a, fmt.Errorf("read approval: %w", gerr)
			}
			var cur Approval
			if json.Unmarshal(e.Value(), &cur) == nil {
				m.mu.Lock()
				if _, seen := m.all[id]; !seen {
					m.all[id] = stored{Approval: cur, rev: e.Revision()}
				}
				m.mu.Unlock()
			}
		}
		if err == nil {
			m.mu.Lock()
			m.all[id] = stored{Approval: a, rev: rev}
			m.mu.Unlock()
			m.publish("approval.requested", a)
			m.record(audit.Entry{Actor: "agent:" + agentID, Action: "policy.ask", Resource: tool, Outcome: "pending",
				Detail: map[string]any{"approval": id, "args": args}})
		}
		s, _ = m.get(id)
	}
	wake := make(chan struct{}, 1)
	m.mu.Lock()
	m.waiters[id] = append(m.waiters[id], wake)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.waiters[id] = slices.DeleteFunc(m.waiters[id], func(c chan struct{}) bool { return c == wake })
		if len(m.waiters[id]) == 0 {
			delete(m.waiters, id)
		}
		m.mu.Unlock()
	}()
	var expire <-chan time.Time
	if s.ExpiresAt != nil {
		t := time.NewTimer(time.Until(*s.ExpiresAt))
		defer t.Stop()
		expire = t.C
	}
	for {
		if cur, ok := m.get(id); ok && cur.State != Pending {
			return cur.Approval, nil
		}
		select {
		case <-wake:
		case <-expire:
			a, err := m.Decide(context.WithoutCancel(ctx), id, false, "oxios", "no decision before the approval's timeout")
			if err != nil && !errors.Is(err, ErrNotPending) {
				return a, err
			}
		case <-ctx.Done():
			cur, _ := m.get(id)
			return cur.Approval, ctx.Err()
		}
	}
}

// Decide approves or rejects a pending approval.
func (m *Manager) Decide(ctx context.Context, id string, approve bool, by, reason string) (Approval, error) {
	for range 5 {
		s, ok := m.get(id)
		if !ok {
			return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
		}
		if s.State != Pending {
			return s.Approval, fmt.Errorf("approval %s is already %s: %w", id, s.State, ErrNotPending)
		}
		a := s.Approval
		now := time.Now().UTC()
		a.State, a.DecidedAt, a.DecidedBy, a.Reason = Rejected, &now, by, reason
		if approve {
			a.State = Approved
		}
		b, _ := json.Marshal(a)
		rev, err := m.kv.Update(ctx, id, b, s.rev)
		if err != nil {
			if strings.Contains(err.Error(), "wrong last sequence") {
				time.Sleep(10 * time.Millisecond) // changed meanwhile: read it again
				continue
			}
			return a, fmt.Errorf("store decision: %w", err)
		}
		m.mu.Lock()
		m.all[id] = stored{Approval: a, rev: rev}
		for _, ch := range m.waiters[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		m.mu.Unlock()
		m.publish("approval."+string(a.State), a)
		action := "approval.approve"
		if !approve {
			action = "approval.reject"
		}
		m.record(audit.Entry{Actor: by, Action: action, Resource: "approval/" + id,
			Detail: map[string]any{"agent": a.AgentID, "tool": a.Tool, "reason": reason}})
		return a, nil
	}
	return Approval{}, fmt.Errorf("approval %s keeps changing; try again", id)
}

// AbandonAgent rejects the pending approvals of an agent that has ended.
func (m *Manager) AbandonAgent(ctx context.Context, agentID, why string) {
	for _, a := range m.List("", agentID) {
		if a.State == Pending {
			m.Decide(ctx, a.ID, false, "oxios", why)
		}
	}
}

// List returns approvals, oldest first, filtered by state and agent.
func (m *Manager) List(state State, agentID string) []Approval {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Approval
	for _, s := range m.all {
		if (state == "" || s.State == state) && (agentID == "" || s.AgentID == agentID) {
			out = append(out, s.Approval)
		}
	}
	slices.SortFunc(out, func(a, b Approval) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// Get returns one approval.
func (m *Manager) Get(id string) (Approval, error) {
	s, ok := m.get(id)
	if !ok {
		return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
	}
	return s.Approval, nil
}

func (m *Manager) publish(typ string, a Approval) {
	if m.bus == nil {
		return
	}
	b, _ := json.Marshal(map[string]any{"id": a.ID, "tool": a.Tool, "args": a.Args, "state": a.State, "decided_by": a.DecidedBy, "reason": a.Reason})
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	m.bus.Publish(ctx, bus.Event{Type: typ, AgentID: a.AgentID, Data: b})
}

func (m *Manager) record(e audit.Entry) {
	if m.audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	m.audit.Append(ctx, e)
}
