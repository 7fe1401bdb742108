package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/oxios"
)

const e2eKey = "sk-e2e-5d1c0b9a8f7e6d5c4b3a"

// startWithModel starts the daemon with llm as its OpenAI endpoint (URL
// and key in the daemon's environment) and returns its PID.
func (e *env) startWithModel(llm *agenttest.Server) int {
	e.t.Helper()
	r := e.run([]string{"OPENAI_API_KEY=" + e2eKey, "OPENAI_BASE_URL=" + llm.URL + "/v1"}, "start", "--listen", e.listen)
	if r.code != 0 {
		e.t.Fatal(r)
	}
	return pidFrom(e.t, r.stdout)
}

// oxios run, end to end: a daemon whose environment holds the provider's
// URL and key, a local server speaking the OpenAI protocol, and the CLI
// printing tool calls and the answer. The key is then searched for in the
// daemon log, the event log and the record.
func TestRunGoal(t *testing.T) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c1", "write_file", map[string]string{"path": "hello.txt", "content": "hi"})}, In: 50, Out: 10},
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c2", "read_file", map[string]string{"path": "/etc/passwd"})}, In: 60, Out: 10},
		agenttest.Reply{Text: "Wrote hello.txt.", In: 70, Out: 5},
	)
	e.startWithModel(llm)
	e.stopAtEnd()
	ws := t.TempDir()
	r := e.oxios("run", "Write hello.txt", "--workspace", ws)
	if r.code != 0 || r.stdout != "Wrote hello.txt.\n" {
		t.Fatalf("run: %s", r)
	}
	if !strings.Contains(r.stderr, "✓ write_file") || !strings.Contains(r.stderr, "✗ read_file") || !strings.Contains(r.stderr, "denied") {
		t.Fatalf("progress lines: %s", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "hello.txt")); err != nil || string(b) != "hi" {
		t.Fatalf("hello.txt: %q %v", b, err)
	}

	// A run that fails exits 1 with the reason.
	llm.SetScript(agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("x", "list_dir", map[string]string{})}})
	r = e.oxios("run", "loop", "--max-steps", "2")
	if r.code != 1 || !strings.Contains(r.stderr, "max steps reached (2)") {
		t.Fatalf("failing run: %s", r)
	}

	// The key is in no log, event or record.
	list := e.oxios("agent", "list", "-o", "json")
	events := e.oxios("events", "--since", "0", "-o", "json")
	logb, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
	for what, s := range map[string]string{"records": list.stdout, "events": events.stdout, "daemon log": string(logb)} {
		if strings.Contains(s, e2eKey) {
			t.Fatalf("the API key is in the %s", what)
		}
	}
	var recs []oxios.Record
	json.Unmarshal([]byte(list.stdout), &recs)
	if len(recs) != 2 || recs[1].Usage.TokensIn != 180 || recs[1].Usage.CostUSD == nil || !strings.Contains(events.stdout, "llm.response") {
		t.Fatalf("records: %s", list.stdout)
	}

	// The policy denial is in the audit trail, which verifies.
	r = e.oxios("audit", "list", "--action", "policy.*", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"action": "policy.denied"`) || !strings.Contains(r.stdout, "read_file:/etc/passwd") {
		t.Fatalf("audit list: %s", r)
	}
	if r = e.oxios("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "audit trail intact") {
		t.Fatalf("audit verify: %s", r)
	}

	// Bad input: an unknown provider is refused at spawn, naming them.
	r = e.oxios("run", "x", "--model", "mistral/large")
	if r.code != 2 || !strings.Contains(r.stderr, "openai, anthropic, ollama") {
		t.Fatalf("unknown provider: %s", r)
	}
	r = e.oxios("agent", "spawn", "--kind", "llm", "--goal", "Say hi", "-o", "json")
	var rec oxios.Record
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rec) != nil || rec.Kind != "llm" || rec.Spec.Model != "openai/gpt-4.1-mini" {
		t.Fatalf("agent spawn --kind llm: %s", r)
	}
}

// The approval flow end to end, across a SIGKILL of the daemon: the model
// asks for a gated tool, the agent waits, the daemon dies and comes back,
// the approval is still pending and the agent waits on it again (resumed
// from its checkpoint), and an operator's approval lets it finish.
//
// The second case stops the daemon gracefully, with arguments spaced as a
// real model sends them: the resumed run re-encodes them, and the approval
// was keyed on their text, so it made a second one and the agent waited
// on that until its timeout (issue 15.2).
func TestApprovalSurvivesSIGKILL(t *testing.T) {
	compact := agenttest.Call("w1", "write_file", map[string]string{"path": "out.txt", "content": "approved"})
	spaced := agenttest.ToolCall{ID: "w1", Name: "write_file", Args: json.RawMessage(`{"path": "out.txt",  "content": "approved"}`)}
	t.Run("sigkill", func(t *testing.T) { approvalAcrossRestart(t, compact, true) })
	t.Run("stop with spaced arguments", func(t *testing.T) { approvalAcrossRestart(t, spaced, false) })
}

func approvalAcrossRestart(t *testing.T, call agenttest.ToolCall, kill bool) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{call}},
		agenttest.Reply{Text: "done"},
	)
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[policy]\nask = [\"write_file\"]\n"), 0o600)
	pid := e.startWithModel(llm)
	e.stopAtEnd()
	ws := t.TempDir()
	r := e.oxios("agent", "spawn", "--kind", "llm", "--goal", "write out.txt", "--dir", ws, "-o", "json")
	var rec oxios.Record
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rec) != nil {
		t.Fatalf("spawn: %s", r)
	}
	pending := func() []oxios.Approval {
		r := e.oxios("approvals", "list", "-o", "json")
		var items []oxios.Approval
		json.Unmarshal([]byte(r.stdout), &items)
		return items
	}
	waiting := func() oxios.Approval {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if ps := pending(); len(ps) == 1 && e.agent(rec.ID).State == oxios.WaitingApproval {
				return ps[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent %s never waited for approval: %+v", rec.ID, e.agent(rec.ID))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	before := waiting()
	if before.Tool != "write_file" || llm.Count() != 1 {
		t.Fatalf("approval %+v, %d model calls", before, llm.Count())
	}

	if kill {
		syscall.Kill(pid, syscall.SIGKILL)
	} else if r := e.oxios("stop"); r.code != 0 {
		t.Fatalf("stop: %s", r)
	}
	waitGone(t, pid, 5*time.Second)
	e.startWithModel(llm)
	after := waiting()
	if after.ID != before.ID || llm.Count() != 1 {
		t.Fatalf("after the restart: approval %s (was %s), %d model calls", after.ID, before.ID, llm.Count())
	}
	if r := e.oxios("approvals", "approve", after.ID, "--reason", "looks fine"); r.code != 0 || !strings.Contains(r.stdout, "approved") {
		t.Fatalf("approve: %s", r)
	}
	if r := e.oxios("approvals", "approve", after.ID); r.code != 1 || !strings.Contains(r.stderr, "already approved") {
		t.Fatalf("approving twice: %s", r)
	}
	if r := e.oxios("agent", "wait", rec.ID, "--timeout", "20s"); r.code != 0 {
		t.Fatalf("wait: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "out.txt")); string(b) != "approved" {
		t.Fatalf("out.txt: %q", b)
	}
	if got := e.agent(rec.ID); got.Output != "done" || got.Steps != 2 {
		t.Fatalf("record: output %q steps %d", got.Output, got.Steps)
	}
	if r := e.oxios("audit", "list", "--action", "approval.*"); r.code != 0 || !strings.Contains(r.stdout, "approval.approve") {
		t.Fatalf("audit: %s", r)
	}
	if r := e.oxios("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify: %s", r)
	}
}

// oxios run says when a call waits for approval, with its id and the
// command that approves it (issue 15.8: it printed nothing).
func TestRunSaysItWaitsForApproval(t *testing.T) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w1", "write_file", map[string]string{"path": "out.txt", "content": "ok"})}},
		agenttest.Reply{Text: "done"},
	)
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[policy]\nask = [\"write_file\"]\n"), 0o600)
	e.startWithModel(llm)
	e.stopAtEnd()
	cmd := exec.Command(binary, "run", "write out.txt")
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home, "NO_COLOR=1")
	var out syncBuffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var id string
	deadline := time.Now().Add(15 * time.Second)
	for id == "" {
		if _, after, ok := strings.Cut(out.String(), "oxios approvals approve "); ok {
			id = strings.Fields(after)[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("no approval line: %q", out.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !strings.Contains(out.String(), "? write_file") {
		t.Errorf("the line does not name the tool: %q", out.String())
	}
	if r := e.oxios("approvals", "approve", id); r.code != 0 {
		t.Fatal(r)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after the approval: %v\n%s", err, out.String())
	}
}

// syncBuffer is a bytes.Buffer safe to write from a process's copier and
// read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A final answer larger than the backbone's largest message (issue 15.3):
// its record write failed, yet wait and the API said succeeded, and after a
// restart the agent was failed and the answer gone. The record now holds
// its first 64 KiB; the whole is in the outputs bucket, printed by run,
// served at /output, kept across a restart and deleted with the agent.
func TestLargeOutputIsStoredWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 MB answer through a daemon restart")
	}
	e := newEnv(t)
	var b strings.Builder
	for i := 0; b.Len() < 10<<20; i++ {
		fmt.Fprintf(&b, "line %07d of a long answer\n", i)
	}
	answer := b.String()
	llm := agenttest.New(t, e2eKey, agenttest.Reply{Text: answer})
	pid := e.startWithModel(llm)
	e.stopAtEnd()
	t0 := time.Now()
	r := e.oxios("run", "answer at length")
	t.Logf("run took %s", time.Since(t0))
	if r.code != 0 || r.stdout != answer {
		t.Fatalf("run: exit %d, %d bytes of output (want %d): %.300s", r.code, len(r.stdout), len(answer), r.stderr)
	}
	var recs []oxios.Record
	if l := e.oxios("agent", "list", "-o", "json"); json.Unmarshal([]byte(l.stdout), &recs) != nil || len(recs) != 1 {
		t.Fatalf("agent list: %.500s", l)
	}
	rec := recs[0]
	check := func(when string, rec oxios.Record) {
		t.Helper()
		if rec.State != oxios.Succeeded || !rec.OutputTruncated || rec.OutputBytes != int64(len(answer)) ||
			len(rec.Output) != oxios.OutputPreview || !strings.HasPrefix(answer, rec.Output) {
			t.Fatalf("%s: record %s %q, truncated %v, %d of %d bytes", when, rec.State, rec.Reason, rec.OutputTruncated, len(rec.Output), rec.OutputBytes)
		}
		code, body := e.get("/api/v1/agents/"+rec.ID+"/output", e.token())
		if code != 200 || body != answer {
			t.Fatalf("%s: GET output: %d, %d bytes (want %d)", when, code, len(body), len(answer))
		}
	}
	check("after run", rec)
	if g := e.oxios("agent", "get", rec.ID); !strings.Contains(g.stdout, "oxios agent output "+rec.ID) {
		t.Fatalf("agent get does not say the output is cut: %.300s", g.stdout[max(0, len(g.stdout)-300):])
	}

	if r := e.oxios("stop"); r.code != 0 {
		t.Fatalf("stop: %s", r)
	}
	waitGone(t, pid, 10*time.Second)
	t0 = time.Now()
	e.startWithModel(llm)
	t.Logf("restart took %s", time.Since(t0))
	check("after a restart", e.agent(rec.ID))
	if o := e.oxios("agent", "output", rec.ID); o.code != 0 || o.stdout != answer {
		t.Fatalf("agent output: exit %d, %d bytes", o.code, len(o.stdout))
	}

	// Deleted with its agent.
	if r := e.oxios("agent", "rm", rec.ID); r.code != 0 {
		t.Fatalf("rm: %s", r)
	}
	if code, body := e.get("/api/v1/agents/"+rec.ID+"/output", e.token()); code != 404 {
		t.Fatalf("output of a deleted agent: %d %.200s", code, body)
	}
}

// A run recovered at boot while it was in a spawn_agent call (issue 16.3:
// recovered runs started while the supervisor opened, before the kernel
// handed the runtime its spawner, so the call found none). The daemon is
// killed while the sub-agent waits for an approval; after the restart the
// parent's call goes on with the same sub-agent, which an approval lets
// finish, and the parent ends with the sub-agent's answer.
func TestSubAgentAcrossSIGKILL(t *testing.T) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("s1", "spawn_agent", map[string]string{"goal": "write sub.txt"})}},
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w1", "write_file", map[string]string{"path": "sub.txt", "content": "from the sub-agent"})}},
		agenttest.Reply{Text: "sub done"},
		agenttest.Reply{Text: "parent done"},
	)
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[policy]\nask = [\"write_file\"]\n"), 0o600)
	pid := e.startWithModel(llm)
	e.stopAtEnd()
	ws := t.TempDir()
	r := e.oxios("agent", "spawn", "--kind", "llm", "--goal", "delegate", "--dir", ws, "-o", "json")
	var parent oxios.Record
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &parent) != nil {
		t.Fatalf("spawn: %s", r)
	}
	pendingOne := func() oxios.Approval {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var items []oxios.Approval
			json.Unmarshal([]byte(e.oxios("approvals", "list", "-o", "json").stdout), &items)
			if len(items) == 1 {
				return items[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d approvals pending", len(items))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	before := pendingOne()
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	e.startWithModel(llm)
	after := pendingOne()
	if after.ID != before.ID {
		t.Fatalf("the sub-agent's approval changed across the restart: %s, then %s", before.ID, after.ID)
	}
	if r := e.oxios("approvals", "approve", after.ID); r.code != 0 {
		t.Fatalf("approve: %s", r)
	}
	if r := e.oxios("agent", "wait", parent.ID, "--timeout", "30s"); r.code != 0 {
		t.Fatalf("wait for the parent: %s", r)
	}
	got := e.agent(parent.ID)
	for _, tc := range got.ToolCalls {
		if tc.Error != "" {
			t.Fatalf("the parent's %s failed after the restart: %s", tc.Name, tc.Error)
		}
	}
	if got.Output != "parent done" {
		t.Fatalf("the parent ended %s with %q", got.State, got.Output)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "sub.txt")); string(b) != "from the sub-agent" {
		t.Fatalf("sub.txt: %q", b)
	}
}
