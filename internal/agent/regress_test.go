package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

// No tool schema goes out with "required": null, which OpenAI refuses.
func TestToolSchemasHaveNoNullRequired(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "ok"})
	s := newStack(t, llm, nil)
	s.run(supervisor.Spec{Goal: "hi"})
	b, _ := json.Marshal(llm.Request(0)["tools"])
	if strings.Contains(string(b), `"required":null`) {
		i := strings.Index(string(b), `"name":"list_dir"`)
		t.Errorf("tools carry \"required\":null: ...%s...", string(b)[i:i+200])
	}
}

// An empty tool result does not become an empty text block, which
// Anthropic refuses.
func TestEmptyToolResult(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c1", "read_file", map[string]string{"path": "empty.txt"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o644)
	s.run(supervisor.Spec{Goal: "read", Model: "anthropic/claude-sonnet-4-5", Dir: dir})
	if m := llm.MessagesJSON(1); strings.Contains(m, `"text":""`) {
		t.Errorf("empty text block sent to Anthropic: %s", m)
	}
}

// A FIFO in the workspace cannot hang a tool (and so an agent): grep skips
// it and read_file refuses it. A kill during a running exec is prompt.
func TestBlockingFilesAndKillDuringExec(t *testing.T) {
	dir := t.TempDir()
	syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600)
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("g", "grep", map[string]string{"pattern": "x"}),
			agenttest.Call("r", "read_file", map[string]string{"path": "pipe"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "grep", Dir: dir})
	if r.State != supervisor.Succeeded || !strings.Contains(r.ToolCalls[1].Error, "not a regular file") {
		t.Fatalf("%s %q %+v", r.State, r.Reason, r.ToolCalls)
	}
	llm.SetScript(agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("e", "exec", map[string]any{"command": "sleep", "args": []string{"100"}})}})
	spec := supervisor.Spec{Kind: supervisor.KindLLM, Goal: "sleep", Dir: dir, Policy: &tools.Policy{Exec: tools.ExecPolicy{Allow: []string{"sleep"}}}}
	a, err := s.sup.Spawn(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if evs := s.events(a.ID); count(evs, "tool.started") > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	k, err := s.sup.Kill(context.Background(), a.ID, 0)
	if err != nil || k.State != supervisor.Killed || time.Since(start) > 3*time.Second {
		t.Fatalf("kill during exec: %v %s after %s", err, k.State, time.Since(start))
	}
}

// With max_running_llm=1 a sub-agent still starts: the parent lends it its
// slot while it waits.
func TestSubAgentWithOneLLMSlot(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("s", "spawn_agent", map[string]string{"goal": "say 42"})}},
		agenttest.Reply{Text: "42"},
		agenttest.Reply{Text: "The sub-agent said 42."})
	s := newStackWith(t, llm, nil, 1)
	r := s.run(supervisor.Spec{Goal: "delegate", Timeout: "3s"})
	if r.State != supervisor.Succeeded {
		t.Errorf("parent %s %q; model requests %d", r.State, r.Reason, llm.Count())
	}
}
