package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

// A manual restart of a running llm agent starts it over (the model is
// asked again from the goal), rather than going on from its checkpoint.
func TestManualRestartStartsOver(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w1", "write_file", map[string]string{"path": "a.txt", "content": "ok"})}},
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w2", "write_file", map[string]string{"path": "b.txt", "content": "ok"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	r, _ := s.sup.Spawn(context.Background(), askSpec(dir, ""))
	s.waitPending(r.ID)
	n := llm.Count()
	if _, err := s.sup.Restart(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	// Started over, the run asks the model again from the goal.
	for deadline := time.Now().Add(10 * time.Second); llm.Count() == n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			got, _ := s.sup.Get(r.ID)
			t.Fatalf("restart did not start the run over (no new model call); state %s", got.State)
		}
	}
}

// Once a conversation outgrows the largest message, a save fails, and the
// previous checkpoint is dropped with it: a restart never resumes from a
// step the run has gone past.
func TestOversizeCheckpointDropsTheOldOne(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	ctx := context.Background()
	cps, err := OpenCheckpoints(ctx, bb.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	old := checkpoint{Messages: []Message{{Role: "user", Text: "goal"}, {Role: "assistant", ToolCalls: []ToolCall{{ID: "s1", Name: "exec"}}}}}
	old.Progress.Steps = 1
	if err := cps.saveAsync("a", old)(); err != nil {
		t.Fatal(err)
	}
	big := old
	big.Messages = append(append([]Message{}, old.Messages...), Message{Role: "tool", Results: []ToolResult{{CallID: "s1", Content: strings.Repeat("x", 3<<20)}}},
		Message{Role: "assistant", ToolCalls: []ToolCall{{ID: "s9", Name: "exec"}}})
	big.Progress.Steps = 9
	if err := cps.saveAsync("a", big)(); err == nil {
		t.Fatal("a checkpoint over the largest message was saved")
	}
	if cp, ok := cps.load(ctx, "a"); ok {
		t.Fatalf("the stale checkpoint of step %d is left to resume from", cp.Progress.Steps)
	}
}
