package budget

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/supervisor"
)

// clock is a settable time for the services under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration)  { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                { return &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }
func calls(n int64) supervisor.Usage  { return supervisor.Usage{LLMCalls: n} }
func tokens(n int64) supervisor.Usage { return supervisor.Usage{TokensIn: n} }
func labelled(kv ...string) supervisor.Record {
	r := supervisor.Record{ID: "a1", Spec: supervisor.Spec{Labels: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Spec.Labels[kv[i]] = kv[i+1]
	}
	return r
}

// check reserves one small call for rec and releases it at once: nil
// when rec's budgets have room.
func check(s *Service, rec supervisor.Record) error {
	release, err := s.Reserve(context.Background(), rec, supervisor.Usage{}, Usage{Calls: 1, Tokens: 1})
	release()
	return err
}

func open(t *testing.T, js jetstream.JetStream, node string, c *clock) *Service {
	t.Helper()
	s, err := Open(context.Background(), js, 1, node, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = c.now
	t.Cleanup(s.Close)
	return s
}

// Usage slides out of the window: the budget is exhausted while the calls
// are inside it, says when it frees, and admits again after.
func TestSlidingWindow(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	c := newClock()
	s := open(t, bb.JS, "n1", c)
	ctx := context.Background()
	if _, err := s.Set(ctx, Budget{Name: Global, Window: "1h", Limits: Limits{Calls: 3}}); err != nil {
		t.Fatal(err)
	}
	rec := labelled()
	first := c.now()
	s.Spend(rec, calls(1), calls(1))
	c.add(20 * time.Minute)
	s.Spend(rec, calls(1), calls(1))
	s.Spend(rec, calls(1), calls(1))
	if _, _, err := s.Admit(rec); err == nil {
		t.Fatal("3 calls of 3 admitted another agent")
	}
	st, _ := s.Get(Global)
	// It frees when the first call leaves the window, an hour after it.
	if st.FreesAt == nil || !st.FreesAt.Equal(first.Add(time.Hour)) {
		t.Fatalf("frees at %v, want %v", st.FreesAt, first.Add(time.Hour))
	}
	c.add(41 * time.Minute) // the first call has left the window
	if st, _ := s.Get(Global); st.Used.Calls != 2 || st.Exhausted {
		t.Fatalf("after the first call left: %+v", st)
	}
	if _, _, err := s.Admit(rec); err != nil {
		t.Fatal(err)
	}
	c.add(20 * time.Minute)
	if st, _ := s.Get(Global); st.Used.Calls != 0 {
		t.Fatalf("after the window: %+v", st)
	}
}

// Limits are checked per label, by cost and tokens too; a model without a
// price counts no cost. Reset forgets the usage.
func TestLabelsCostAndReset(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	c := newClock()
	s := open(t, bb.JS, "n1", c)
	ctx := context.Background()
	s.Set(ctx, Budget{Name: "label:team=research", Window: "7d", Limits: Limits{CostUSD: 1.5, Tokens: 1000}})
	research, other := labelled("team", "research"), labelled("team", "ops")
	cost := 1.0
	s.Spend(research, supervisor.Usage{CostUSD: &cost, TokensIn: 10}, supervisor.Usage{CostUSD: &cost, TokensIn: 10})
	s.Spend(other, tokens(5000), tokens(5000))
	if err := check(s, research); err != nil {
		t.Fatal(err)
	}
	s.Spend(research, tokens(10), supervisor.Usage{CostUSD: &cost, TokensIn: 10})
	err := check(s, research)
	var be *Error
	if !errors.As(err, &be) || be.Metric != "cost_usd" || be.Budget != "label:team=research" || !errors.Is(err, supervisor.ErrBudget) {
		t.Fatalf("%v", err)
	}
	if !strings.Contains(err.Error(), "allows $1.5 cost_usd per 7d and $2 were used") {
		t.Fatal(err)
	}
	if err := check(s, other); err != nil {
		t.Fatalf("another label's usage counted: %v", err)
	}
	if _, err := s.Reset(ctx, "label:team=research"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Get("label:team=research"); st.Used != (Usage{}) || st.Exhausted {
		t.Fatalf("after reset: %+v", st)
	}
	if err := check(s, research); err != nil {
		t.Fatal(err)
	}
}

// Usage is written to the bucket: a daemon that opens it again (after a
// crash) finds it, and two nodes on one bucket each see the other's.
func TestPersistedAndShared(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	c := newClock()
	a := open(t, bb.JS, "n1", c)
	ctx := context.Background()
	a.Set(ctx, Budget{Name: Global, Limits: Limits{Tokens: 100}})
	a.Spend(labelled(), tokens(30), tokens(30))
	// Sync returns once the usage is in the bucket.
	a.Sync(ctx)
	e, err := a.kv.Get(ctx, useKey(Global, "n1"))
	if err != nil || !strings.Contains(string(e.Value()), `"tokens":30`) {
		t.Fatalf("after Sync: %v %s", err, e.Value())
	}
	a.Close()

	again := open(t, bb.JS, "n1", c)
	if st, err := again.Get(Global); err != nil || st.Used.Tokens != 30 || st.Window != "24h" {
		t.Fatalf("reopened: %+v %v", st, err)
	}
	b := open(t, bb.JS, "n2", c)
	b.Spend(labelled(), tokens(50), tokens(50))
	again.Spend(labelled(), tokens(20), tokens(20))
	deadline := time.Now().Add(5 * time.Second)
	for {
		sa, _ := again.Get(Global)
		sb, _ := b.Get(Global)
		if sa.Used.Tokens == 100 && sb.Used.Tokens == 100 && sa.Exhausted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 sees %d, n2 sees %d; want 100", sa.Used.Tokens, sb.Used.Tokens)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A reset on one node and a change of limits on the other at once: the
	// change keeps the reset (compare-and-set on the definition).
	c.add(time.Second)
	if _, err := again.Reset(ctx, Global); err != nil {
		t.Fatal(err)
	}
	st, err := b.Set(ctx, Budget{Name: Global, Limits: Limits{Tokens: 500}})
	if err != nil || st.ResetAt == nil || st.Used.Tokens != 0 || st.Tokens != 500 {
		t.Fatalf("a change right after a reset elsewhere: %+v %v", st, err)
	}
	if err := again.Delete(ctx, Global); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Get(Global); !errors.Is(err, supervisor.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if keys, _ := again.kv.Keys(ctx); len(keys) != 0 {
		t.Fatalf("left behind: %v", keys)
	}
}

// Bad definitions name the field and what is allowed.
func TestValidation(t *testing.T) {
	cases := []struct {
		b     Budget
		field string
		msg   string
	}{
		{Budget{Name: "team", Limits: Limits{Calls: 1}}, "name", `must be "global" or "label:KEY=VALUE"`},
		{Budget{Name: "label:=x", Limits: Limits{Calls: 1}}, "name", "must be"},
		{Budget{Name: Global, Limits: Limits{Tokens: -1}}, "tokens", "must be 0 (no limit) or more (got -1)"},
		{Budget{Name: Global, Limits: Limits{CostUSD: -0.5}}, "cost_usd", "must be 0 (no limit)"},
		{Budget{Name: Global, Limits: Limits{Calls: -3}}, "calls", "(got -3)"},
		{Budget{Name: Global}, "tokens", "set at least one limit"},
		{Budget{Name: Global, Window: "soon", Limits: Limits{Calls: 1}}, "window", `such as "1h"`},
		{Budget{Name: Global, Window: "0s", Limits: Limits{Calls: 1}}, "window", "from 1s to 366d"},
		{Budget{Name: Global, Window: "400d", Limits: Limits{Calls: 1}}, "window", "from 1s to 366d"},
	}
	for _, c := range cases {
		err := Validate(&c.b)
		var inv *supervisor.InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field || !strings.Contains(inv.Msg, c.msg) {
			t.Errorf("%+v: %v", c.b, err)
		}
	}
	ok := Budget{Name: "label:example.com/team=data science", Window: "30d", Limits: Limits{CostUSD: 20}}
	if err := Validate(&ok); err != nil {
		t.Fatal(err)
	}
}
