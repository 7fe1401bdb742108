package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

// waitPending waits until the agent is waiting_approval with one pending
// approval, and returns it.
func (s *stack) waitPending(id string) approval.Approval {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := s.sup.Get(id)
		if ps := s.approvals.List(approval.Pending, id); len(ps) == 1 && r.State == supervisor.WaitingApproval {
			return ps[0]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("agent %s is %s with %d pending approvals", id, r.State, len(s.approvals.List(approval.Pending, id)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *stack) waitEnd(id string) supervisor.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := s.sup.Wait(ctx, id)
	if err != nil || !r.State.Terminal() {
		s.t.Fatalf("wait: %v %s", err, r.State)
	}
	return r
}

func askSpec(dir string, timeout string) supervisor.Spec {
	return supervisor.Spec{Kind: supervisor.KindLLM, Goal: "write it", Dir: dir,
		Policy: &tools.Policy{Ask: []string{"write_file"}, AskTimeout: timeout}}
}

// A call the policy marks "ask" waits in waiting_approval; approved, it
// runs and the agent goes on; rejected (or timed out), the model sees the
// rejection as the tool's error.
func TestApprovals(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w1", "write_file", map[string]string{"path": "a.txt", "content": "approved"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	r, err := s.sup.Spawn(context.Background(), askSpec(dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	a := s.waitPending(r.ID)
	if a.Tool != "write_file" || !strings.Contains(a.Args, "a.txt") {
		t.Fatalf("approval %+v", a)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.txt")); err == nil {
		t.Fatal("the call ran before it was approved")
	}
	if _, err := s.approvals.Decide(context.Background(), a.ID, true, "tester", "fine"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.approvals.Decide(context.Background(), a.ID, false, "tester", ""); err == nil {
		t.Fatal("decided twice")
	}
	if got := s.waitEnd(r.ID); got.State != supervisor.Succeeded {
		t.Fatalf("%s %q", got.State, got.Reason)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "approved" {
		t.Fatalf("file: %q", b)
	}
	evs := s.events(r.ID)
	if count(evs, "approval.requested") != 1 || count(evs, "approval.approved") != 1 || count(evs, "agent.waiting_approval") != 1 || count(evs, "agent.resumed") != 1 {
		t.Fatalf("events %v", evs)
	}

	// Rejected: the model is told, and the file is not written.
	llm.SetScript(agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w2", "write_file", map[string]string{"path": "b.txt", "content": "x"})}},
		agenttest.Reply{Text: "ok, not written"})
	n := llm.Count()
	r, _ = s.sup.Spawn(context.Background(), askSpec(dir, ""))
	a = s.waitPending(r.ID)
	s.approvals.Decide(context.Background(), a.ID, false, "tester", "not now")
	if got := s.waitEnd(r.ID); got.State != supervisor.Succeeded || !strings.Contains(got.ToolCalls[0].Error, "rejected by tester: not now") {
		t.Fatalf("%s %+v", got.State, got.ToolCalls)
	}
	if m := llm.MessagesJSON(n + 1); !strings.Contains(m, "rejected by tester: not now") {
		t.Fatalf("the model did not see the rejection: %s", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.txt")); err == nil {
		t.Fatal("a rejected call ran")
	}

	// Timed out: rejected by oxios.
	llm.SetScript(agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w3", "write_file", map[string]string{"path": "c.txt", "content": "x"})}},
		agenttest.Reply{Text: "gave up"})
	r, _ = s.sup.Spawn(context.Background(), askSpec(dir, "200ms"))
	if got := s.waitEnd(r.ID); !strings.Contains(got.ToolCalls[0].Error, "rejected by oxios: no decision before the approval's timeout") {
		t.Fatalf("%+v", got.ToolCalls)
	}

	// Killed while waiting: the agent ends killed, its approval rejected.
	llm.SetScript(agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w4", "write_file", map[string]string{"path": "d.txt", "content": "x"})}})
	r, _ = s.sup.Spawn(context.Background(), askSpec(dir, ""))
	a = s.waitPending(r.ID)
	if k, err := s.sup.Kill(context.Background(), r.ID, -1); err != nil || k.State != supervisor.Killed {
		t.Fatalf("kill: %v %s", err, k.State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := s.approvals.Get(a.ID)
		if got.State == approval.Rejected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approval of a killed agent is %s", got.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A provider that reuses tool-call ids (per-response numbering, or none)
// does not let one approval approve a later call with other arguments.
func TestApprovalIsPerCall(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("call_0", "write_file", map[string]string{"path": "a.txt", "content": "ok"})}},
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("call_0", "write_file", map[string]string{"path": "evil.txt", "content": "pwned"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	r, err := s.sup.Spawn(context.Background(), askSpec(dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	a := s.waitPending(r.ID)
	if _, err := s.approvals.Decide(context.Background(), a.ID, true, "tester", "a.txt is fine"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, "evil.txt")); err == nil {
			t.Fatalf("evil.txt written without any approval; approvals: %+v", s.approvals.List("", r.ID))
		}
		if len(s.approvals.List(approval.Pending, r.ID)) == 1 {
			return // asked again: good
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("neither asked nor written")
}
