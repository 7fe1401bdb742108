package approval

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
)

type fixture struct {
	bb    *backbone.Backbone
	bus   *bus.Bus
	trail *audit.Log
	m     *Manager
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{bb: backbonetest.Start(t, "1s")}
	ctx := context.Background()
	var err error
	if f.bus, err = bus.Open(ctx, f.bb.JS, bus.Options{Node: "test", MaxAge: time.Hour, MaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.bus.Close)
	if f.trail, err = audit.Open(ctx, f.bb.JS, audit.Options{KeyPath: filepath.Join(t.TempDir(), "audit.key")}); err != nil {
		t.Fatal(err)
	}
	f.m = f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) *Manager {
	t.Helper()
	m, err := Open(context.Background(), f.bb.JS, 1, f.bus, f.trail)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// pending polls until the manager lists n pending approvals.
func pending(t *testing.T, m *Manager, n int) []Approval {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ps := m.List(Pending, ""); len(ps) == n {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pending approvals, want %d", len(m.List(Pending, "")), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type answer struct {
	a   Approval
	err error
}

func request(m *Manager, ctx context.Context, agent, position, args string, timeout time.Duration) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		a, err := m.Request(ctx, agent, position, "exec", args, timeout)
		ch <- answer{a, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Request did not return")
		return answer{}
	}
}

// A request waits for a human; an approval wakes it, a second decision is
// refused, and both the request and the decision are audited and
// published.
func TestRequestWaitsForTheDecision(t *testing.T) {
	f := newFixture(t)
	ch := request(f.m, context.Background(), "ag1", "1.0", `{"command":"echo"}`, 0)
	p := pending(t, f.m, 1)[0]
	if p.AgentID != "ag1" || p.Tool != "exec" || p.ExpiresAt != nil {
		t.Fatalf("pending: %+v", p)
	}
	got, err := f.m.Decide(context.Background(), p.ID, true, "alice", "fine")
	if err != nil || got.State != Approved || got.DecidedBy != "alice" || got.DecidedAt == nil {
		t.Fatalf("decide: %+v %v", got, err)
	}
	if r := await(t, ch); r.err != nil || r.a.State != Approved || r.a.Reason != "fine" {
		t.Fatalf("request: %+v", r)
	}
	if _, err := f.m.Decide(context.Background(), p.ID, false, "bob", ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("a second decision: %v", err)
	}
	if _, err := f.m.Decide(context.Background(), "nope", true, "bob", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown id: %v", err)
	}
	es, _ := f.trail.List(context.Background(), audit.Filter{})
	var actions []string
	for _, e := range es {
		actions = append(actions, e.Action)
	}
	if len(actions) != 2 || actions[0] != "policy.ask" || actions[1] != "approval.approve" {
		t.Fatalf("audited: %v", actions)
	}
}

// The same call asked twice (a run resumed after a restart) is one
// approval, and a decision on it answers both.
func TestTheSameCallIsOneApproval(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := request(f.m, ctx, "ag1", "2.0", `{"command": "echo",  "args": ["x"]}`, 0)
	pending(t, f.m, 1)
	b := request(f.m, ctx, "ag1", "2.0", `{"args":["x"],"command":"echo"}`, 0)
	p := pending(t, f.m, 1)[0]
	f.m.Decide(ctx, p.ID, false, "alice", "no")
	for _, ch := range []<-chan answer{a, b} {
		if r := await(t, ch); r.err != nil || r.a.State != Rejected || r.a.ID != p.ID {
			t.Fatalf("request: %+v", r)
		}
	}
}

// A request whose context ends stays pending, and another manager on the
// same bucket (a daemon after a restart) sees it and can decide it.
func TestPendingOutlivesItsRequester(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch := request(f.m, ctx, "ag1", "1.0", `{}`, 0)
	p := pending(t, f.m, 1)[0]
	cancel()
	if r := await(t, ch); !errors.Is(r.err, context.Canceled) || r.a.State != Pending {
		t.Fatalf("cancelled request: %+v", r)
	}
	f.m.Close()
	m2 := f.open(t)
	if got, err := m2.Get(p.ID); err != nil || got.State != Pending {
		t.Fatalf("after a reopen: %+v %v", got, err)
	}
	again := request(m2, context.Background(), "ag1", "1.0", `{}`, 0)
	if _, err := m2.Decide(context.Background(), p.ID, true, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if r := await(t, again); r.err != nil || r.a.State != Approved {
		t.Fatalf("resumed request: %+v", r)
	}
}

// A timeout rejects the call when it passes, once, even with many waiters.
func TestTimeoutRejects(t *testing.T) {
	f := newFixture(t)
	var chs []<-chan answer
	for range 3 {
		chs = append(chs, request(f.m, context.Background(), "ag1", "3.0", `{}`, 200*time.Millisecond))
	}
	for _, ch := range chs {
		if r := await(t, ch); r.err != nil || r.a.State != Rejected || r.a.DecidedBy != "oxios" || r.a.ExpiresAt == nil {
			t.Fatalf("timed out: %+v", r)
		}
	}
	es, _ := f.trail.List(context.Background(), audit.Filter{Action: "approval.reject"})
	if len(es) != 1 {
		t.Fatalf("%d rejections audited", len(es))
	}
}

// An agent that ends takes its pending approvals with it, and only its.
func TestAbandonAgent(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	request(f.m, ctx, "ag1", "1.0", `{"n":1}`, 0)
	request(f.m, ctx, "ag1", "1.1", `{"n":2}`, 0)
	request(f.m, ctx, "ag2", "1.0", `{"n":3}`, 0)
	pending(t, f.m, 3)
	f.m.AbandonAgent(context.Background(), "ag1", "the agent ended")
	left := pending(t, f.m, 1)
	if left[0].AgentID != "ag2" {
		t.Fatalf("left pending: %+v", left)
	}
	for _, a := range f.m.List(Rejected, "ag1") {
		if a.Reason != "the agent ended" {
			t.Fatalf("abandoned: %+v", a)
		}
	}
	if n := len(f.m.List(Rejected, "ag1")); n != 2 {
		t.Fatalf("%d of ag1's approvals rejected", n)
	}
}
