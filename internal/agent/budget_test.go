package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/supervisor"
)

func listDir(id string) agenttest.Reply {
	return agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call(id, "list_dir", map[string]string{})}, In: 100, Out: 50}
}

func (s *stack) setBudget(b budget.Budget) {
	s.t.Helper()
	if _, err := s.budgets.Set(context.Background(), b); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) spawn(spec supervisor.Spec) supervisor.Record {
	s.t.Helper()
	spec.Kind = supervisor.KindLLM
	r, err := s.sup.Spawn(context.Background(), spec)
	if err != nil {
		s.t.Fatalf("spawn: %v", err)
	}
	return r
}

// waitFor polls agent id's record until ok, for at most 10 s.
func (s *stack) waitFor(id string, ok func(supervisor.Record) bool) supervisor.Record {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.sup.Get(id)
		if err == nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("agent %s: still %s %q", id, r.State, r.Reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The model's usage crosses the global token limit in the middle of a run:
// the agent gets a warning at 80 %, makes the call that crosses 100 %, and
// is stopped before the next one, failed with "budget exceeded", keeping
// its output and usage so far. The next agent under the budget does not
// start at all.
func TestBudgetExceededMidRun(t *testing.T) {
	for _, model := range []string{"openai/gpt-4.1-mini", "anthropic/claude-sonnet-4-5"} {
		t.Run(strings.Split(model, "/")[0], func(t *testing.T) {
			third := listDir("c3")
			third.Text = "partial answer"
			llm := agenttest.New(t, testKey, listDir("c1"), listDir("c2"), third, agenttest.Reply{Text: "never reached"})
			s := newStack(t, llm, nil)
			s.setBudget(budget.Budget{Name: budget.Global, Window: "1h", Limits: budget.Limits{Tokens: 360}})
			r := s.run(supervisor.Spec{Goal: "spend", Model: model, Restart: supervisor.Restart{Policy: supervisor.OnFailure}})
			if r.State != supervisor.Failed || !strings.HasPrefix(r.Reason, "budget exceeded: global allows 360 tokens per 1h and 450 were used") {
				t.Fatalf("%s %q", r.State, r.Reason)
			}
			if llm.Count() != 3 || r.Usage.TokensIn != 300 || r.Usage.TokensOut != 150 || r.Usage.LLMCalls != 3 || r.Output != "partial answer" {
				t.Fatalf("requests %d, usage %+v, output %q", llm.Count(), r.Usage, r.Output)
			}
			if r.Restarts != 0 {
				t.Fatalf("a budget failure was restarted %d times", r.Restarts)
			}
			evs := s.events(r.ID)
			if count(evs, "budget.warning") != 1 || count(evs, "budget.exceeded") != 1 {
				t.Fatalf("warning %d, exceeded %d", count(evs, "budget.warning"), count(evs, "budget.exceeded"))
			}
			st, err := s.budgets.Get(budget.Global)
			if err != nil || st.Used.Tokens != 450 || st.Used.Calls != 3 || !st.Exhausted || st.FreesAt == nil {
				t.Fatalf("%+v %v", st, err)
			}

			next := s.run(supervisor.Spec{Goal: "again", Model: model})
			if next.State != supervisor.Failed || !strings.HasPrefix(next.Reason, "budget exhausted: global allows 360 tokens") || next.StartedAt != nil {
				t.Fatalf("%s %q started %v", next.State, next.Reason, next.StartedAt)
			}
			if llm.Count() != 3 {
				t.Fatalf("an agent over budget called the model: %d requests", llm.Count())
			}
		})
	}
}

// An agent's own limits stop it, whatever the shared budgets.
func TestSpecBudget(t *testing.T) {
	llm := agenttest.New(t, testKey, listDir("c1"), listDir("c2"), agenttest.Reply{Text: "never"})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "spend", Budget: &supervisor.SpecBudget{Calls: 2}})
	if r.State != supervisor.Failed || r.Reason != "budget exceeded: the agent's own budget allows 2 calls and it used 2" || llm.Count() != 2 {
		t.Fatalf("%s %q %d", r.State, r.Reason, llm.Count())
	}
	if count(s.events(r.ID), "budget.exceeded") != 1 {
		t.Fatal("no budget.exceeded event")
	}
}

// A label budget applies to the agents with that label only. An agent
// whose spec says wait stays queued while the budget is exhausted, without
// holding a slot, and starts when it frees (here: reset); a kill while it
// waits cancels it.
func TestLabelBudgetAndWait(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "done", In: 10, Out: 10})
	s := newStack(t, llm, nil)
	s.setBudget(budget.Budget{Name: "label:team=a", Window: "1h", Limits: budget.Limits{Calls: 1}})
	a := supervisor.Spec{Goal: "x", Labels: map[string]string{"team": "a"}}
	if r := s.run(a); r.State != supervisor.Succeeded {
		t.Fatalf("first: %s %q", r.State, r.Reason)
	}
	if r := s.run(a); r.State != supervisor.Failed || !strings.HasPrefix(r.Reason, "budget exhausted: label:team=a allows 1 calls per 1h and 1 were used") {
		t.Fatalf("second: %s %q", r.State, r.Reason)
	}
	if r := s.run(supervisor.Spec{Goal: "x", Labels: map[string]string{"team": "b"}}); r.State != supervisor.Succeeded {
		t.Fatalf("other label: %s %q", r.State, r.Reason)
	}

	wait := a
	wait.Budget = &supervisor.SpecBudget{OnExhausted: supervisor.BudgetWait}
	waiting := s.spawn(wait)
	killed := s.spawn(wait)
	for _, id := range []string{waiting.ID, killed.ID} {
		r := s.waitFor(id, func(r supervisor.Record) bool { return strings.HasPrefix(r.Reason, "budget exhausted") })
		if r.State != supervisor.Queued || r.NextStartAt == nil {
			t.Fatalf("waiting: %s %q next %v", r.State, r.Reason, r.NextStartAt)
		}
	}
	if snap := s.sup.Scheduler(); snap.RunningLLM != 0 {
		t.Fatalf("agents waiting for a budget hold %d slots", snap.RunningLLM)
	}
	k, err := s.sup.Kill(context.Background(), killed.ID, 0)
	if err != nil || k.State != supervisor.Killed || k.Reason != "cancelled" {
		t.Fatalf("kill: %s %q %v", k.State, k.Reason, err)
	}
	calls := llm.Count()
	if _, err := s.budgets.Reset(context.Background(), "label:team=a"); err != nil {
		t.Fatal(err)
	}
	if r := s.waitEnd(waiting.ID); r.State != supervisor.Succeeded || llm.Count() != calls+1 {
		t.Fatalf("after reset: %s %q, %d calls", r.State, r.Reason, llm.Count()-calls)
	}
}

// A waiting agent starts by itself when its usage leaves the window.
func TestWaitForTheWindow(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	s.setBudget(budget.Budget{Name: budget.Global, Window: "1s", Limits: budget.Limits{Calls: 1}})
	if r := s.run(supervisor.Spec{Goal: "x"}); r.State != supervisor.Succeeded {
		t.Fatalf("first: %s %q", r.State, r.Reason)
	}
	start := time.Now()
	r := s.spawn(supervisor.Spec{Goal: "x", Budget: &supervisor.SpecBudget{OnExhausted: supervisor.BudgetWait}})
	s.waitFor(r.ID, func(r supervisor.Record) bool {
		return r.State == supervisor.Queued && strings.HasPrefix(r.Reason, "budget exhausted")
	})
	if end := s.waitEnd(r.ID); end.State != supervisor.Succeeded {
		t.Fatalf("%s %q", end.State, end.Reason)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("started %s later, for a 1s window", d)
	}
	if !errors.Is(&budget.Error{}, supervisor.ErrBudget) {
		t.Fatal("budget errors do not match ErrBudget")
	}
}

// An agent whose budget freed while every LLM slot was taken waits for a
// slot; killed there, it ends at once and for good: restarted and killed
// again, it ends once (no stale goroutine wakes for it). Changes of budgets
// that do not free it do not rewrite its record.
func TestKillWhileWaitingForASlot(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "done"}, agenttest.Reply{Hang: true})
	s := newStackWith(t, llm, nil, 1)
	s.setBudget(budget.Budget{Name: "label:team=a", Window: "1h", Limits: budget.Limits{Calls: 1}})
	team := map[string]string{"team": "a"}
	if r := s.run(supervisor.Spec{Goal: "x", Labels: team}); r.State != supervisor.Succeeded {
		t.Fatalf("first: %s %q", r.State, r.Reason)
	}
	w := s.spawn(supervisor.Spec{Goal: "x", Labels: team, Budget: &supervisor.SpecBudget{OnExhausted: supervisor.BudgetWait}})
	s.waitFor(w.ID, func(r supervisor.Record) bool { return strings.HasPrefix(r.Reason, "budget exhausted") })
	blocker := s.spawn(supervisor.Spec{Goal: "hang"})
	s.waitFor(blocker.ID, func(r supervisor.Record) bool { return r.State == supervisor.Running })
	for range 3 { // unrelated changes
		s.setBudget(budget.Budget{Name: "label:team=b", Window: "1h", Limits: budget.Limits{Calls: 5}})
	}
	if _, err := s.budgets.Reset(context.Background(), "label:team=a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.sup.Scheduler().QueuedTotal != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the freed agent never queued for a slot: %+v", s.sup.Scheduler())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for round := range 2 {
		k, err := s.sup.Kill(context.Background(), w.ID, 0)
		if err != nil || k.State != supervisor.Killed {
			t.Fatalf("round %d: kill: %s %q %v", round, k.State, k.Reason, err)
		}
		if snap := s.sup.Scheduler(); snap.QueuedTotal != 0 || snap.RunningLLM != 1 {
			t.Fatalf("round %d: after the kill: %+v", round, snap)
		}
		if round == 0 {
			if _, err := s.sup.Restart(context.Background(), w.ID); err != nil {
				t.Fatal(err)
			}
			s.waitFor(w.ID, func(r supervisor.Record) bool { return r.State == supervisor.Queued })
		}
	}
	if n := count(s.events(w.ID), "agent.queued"); n != 1 {
		t.Fatalf("%d agent.queued events for one wait", n)
	}
	if _, err := s.sup.Kill(context.Background(), blocker.ID, 0); err != nil {
		t.Fatal(err)
	}
}

// Five llm agents spawned at once under a budget of one call: exactly one
// calls the model; the others end failed with the budget's error.
func TestOneCallBudgetUnderConcurrentSpawns(t *testing.T) {
	replies := make([]agenttest.Reply, 5)
	for i := range replies {
		replies[i] = agenttest.Reply{Text: "done", In: 10, Out: 5}
	}
	llm := agenttest.New(t, testKey, replies...)
	s := newStack(t, llm, nil)
	s.setBudget(budget.Budget{Name: budget.Global, Window: "1h", Limits: budget.Limits{Calls: 1}})
	var ids []string
	for range 5 {
		ids = append(ids, s.spawn(supervisor.Spec{Goal: "one call"}).ID)
	}
	succeeded := 0
	for _, id := range ids {
		r := s.waitFor(id, func(r supervisor.Record) bool { return r.State.Terminal() })
		switch {
		case r.State == supervisor.Succeeded:
			succeeded++
		case !strings.Contains(r.Reason, "global allows 1 calls"):
			t.Fatalf("%s %q", r.State, r.Reason)
		}
	}
	if succeeded != 1 || llm.Count() != 1 {
		t.Fatalf("%d succeeded, %d model calls, under a budget of one call", succeeded, llm.Count())
	}
}
