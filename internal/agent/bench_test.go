package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

// serveEnv makes the test binary a model server (see serveForBenchmark).
const serveEnv = "OXIOS_AGENTTEST_SERVE"

// serveForBenchmark runs the local model server, answering every request
// with one list_dir tool call, and prints its URL; the benchmark that
// started this process kills it.
func serveForBenchmark() {
	llm := agenttest.Start(testKey, agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c", "list_dir", map[string]string{})}, In: 100, Out: 10})
	llm.Lean = true
	fmt.Println(llm.URL)
	select {}
}

// BenchmarkLoopStep measures the kernel's cost of one loop step against a
// model server that answers at once, in its own process (so that its work
// is not counted): the model call over HTTP (streamed, built and parsed by
// the real SDK), one tool call through the gate, its events and the
// record's update. Each op is one agent of 50 steps (the default
// max_steps) or of 10, so the conversation grows as in a real run. It
// reports the wall time per step and this process's CPU time per step.
//
//	go test -run '^$' -bench LoopStep -benchtime 20x ./internal/agent
func BenchmarkLoopStep(b *testing.B) {
	s := newStackAt(b, modelServer(b), 10)
	for _, c := range []struct {
		steps   int
		budgets bool
	}{{10, false}, {50, false}, {50, true}} {
		steps := c.steps
		name := fmt.Sprintf("steps=%d", steps)
		var labels map[string]string
		if c.budgets {
			// Two budgets apply: each call is checked against both and
			// its usage written to both before the next step.
			name += ",budgets=2"
			labels = map[string]string{"team": "bench"}
			s.t = b
			s.setBudget(budget.Budget{Name: budget.Global, Window: "24h", Limits: budget.Limits{Tokens: 1 << 50}})
			s.setBudget(budget.Budget{Name: "label:team=bench", Window: "1h", Limits: budget.Limits{Calls: 1 << 40}})
		}
		b.Run(name, func(b *testing.B) {
			s.t = b
			cpu0 := cpuTime()
			for b.Loop() {
				r := s.run(supervisor.Spec{Goal: "loop", MaxSteps: steps, Labels: labels})
				if r.Steps != steps || !strings.HasPrefix(r.Reason, "max steps reached") {
					b.Fatalf("%d steps: %s %q", r.Steps, r.State, r.Reason)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*steps)/1000, "ms/step")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*steps)/1000, "cpu-ms/step")
		})
	}
}

// modelServer starts the model server in a process of its own (this test
// binary, re-executed) and returns its URL; it is killed when b ends.
func modelServer(b *testing.B) string {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(url)
}

// cpuTime is the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConcurrentAgents runs 200 llm agents at once (max_running_llm
// 200) against a provider with 50 ms latency; each takes two steps (a tool
// call, then the answer). It reports agents and steps per second and the
// process's memory.
//
//	go test -run '^$' -bench ConcurrentAgents -benchtime 3x ./internal/agent
func BenchmarkConcurrentAgents(b *testing.B) {
	const n = 200
	llm := agenttest.New(b, testKey) // replies are set per round
	llm.Lean = true
	s := newStackTB(b, llm, n)
	var total time.Duration
	var peakRSS int
	for b.Loop() {
		llm.SetScript()
		script := make([]agenttest.Reply, 0, 2*n)
		for range n {
			script = append(script, agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c", "list_dir", map[string]string{})}, Delay: 50 * time.Millisecond, In: 100, Out: 10})
		}
		for range n {
			script = append(script, agenttest.Reply{Text: "done", Delay: 50 * time.Millisecond, In: 100, Out: 5})
		}
		llm.SetScript(script...)
		t0 := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := s.run(supervisor.Spec{Goal: "work"}); r.State != supervisor.Succeeded {
					b.Errorf("%s %q", r.State, r.Reason)
				}
			}()
		}
		wg.Wait()
		total += time.Since(t0)
		peakRSS = max(peakRSS, rssKB())
	}
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per*1000, "ms/200-agents")
	b.ReportMetric(n/per, "agents/s")
	b.ReportMetric(2*n/per, "steps/s")
	b.ReportMetric(float64(peakRSS)/1024, "MB-RSS")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
}

func rssKB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return kb
		}
	}
	return 0
}

// BenchmarkProviderCall is one model call alone through the OpenAI SDK to
// the out-of-process server: the floor under a loop step.
//
//	go test -run '^$' -bench ProviderCall ./internal/agent
func BenchmarkProviderCall(b *testing.B) {
	p := newOpenAI("openai", ProviderConfig{BaseURL: modelServer(b) + "/v1", APIKey: testKey}, 0)
	var defs []ToolDef
	for _, d := range tools.Defs() {
		defs = append(defs, ToolDef{Name: d.Name, Description: d.Description, Schema: d.Schema})
	}
	req := Request{Model: "m", System: "be brief", Messages: []Message{{Role: "user", Text: "hi"}}, Tools: defs}
	if os.Getenv("NOTOOLS") != "" {
		req.Tools = nil
	}
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := p.Complete(context.Background(), req, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N)/1000, "cpu-ms/call")
}
