package agent

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

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
