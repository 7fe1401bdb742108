package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/supervisor"
)

// A model answer with k parallel spawn_agent calls: the parent lends its
// slot once, gets it back once, and every llm slot is free after each run.
// With k above max_running_llm the parent must not stay running for ever
// (issue 15: k-1 slots leaked per run, and k = 20 deadlocked).
func TestParallelSubAgentsReturnTheirSlots(t *testing.T) {
	for _, k := range []int{3, 20} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			script := func() []agenttest.Reply {
				var calls []agenttest.ToolCall
				for i := range k {
					calls = append(calls, agenttest.Call(fmt.Sprintf("s%d", i), "spawn_agent", map[string]string{"goal": "say 42"}))
				}
				out := []agenttest.Reply{{Calls: calls}}
				for range k + 1 {
					out = append(out, agenttest.Reply{Text: "42"})
				}
				return out
			}
			llm := agenttest.New(t, testKey, script()...)
			s := newStackWith(t, llm, nil, 8)
			for run := range 3 {
				llm.SetScript(script()...)
				r := s.run(supervisor.Spec{Goal: "fan out", Timeout: "30s"})
				if r.State != supervisor.Succeeded {
					t.Fatalf("run %d: parent %s %q", run, r.State, r.Reason)
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					snap := s.sup.Scheduler()
					if snap.Running == 0 && snap.RunningLLM == 0 && snap.QueuedTotal == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("after run %d: running %d, running_llm %d, queued %d", run, snap.Running, snap.RunningLLM, snap.QueuedTotal)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
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
