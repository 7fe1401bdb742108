package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/agent/agenttest"
)

// GET /metrics: Prometheus's text format, checked by promtool (Debian
// package prometheus; .ci/run installs it), with the metrics of every part
// once they have seen work; without a token it is refused.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("OXIOS_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool is required in CI but not installed: apt-get install prometheus")
		}
		t.Skip("metrics test skipped: promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c1", "list_dir", map[string]string{})}, In: 40, Out: 10},
		agenttest.Reply{Text: "done", In: 50, Out: 5})
	e.startWithModel(llm)
	e.stopAtEnd()
	if r := e.oxios("run", "look around"); r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	e.spawnJSON("--", "sleep", "60")
	if code, _ := e.get("/metrics", ""); code != 401 {
		t.Fatalf("/metrics without a token: %d", code)
	}
	code, body := e.get("/metrics", e.token())
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	f := filepath.Join(t.TempDir(), "metrics.txt")
	os.WriteFile(f, []byte(body), 0o644)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n(metrics in %s)", err, out, f)
	}
	for _, want := range []string{
		`oxios_agents{state="running"} 1`,
		`oxios_agents{state="succeeded"} 1`,
		`oxios_agent_spawns_total{kind="llm"} 1`,
		`oxios_agent_spawns_total{kind="process"} 1`,
		`oxios_agent_exits_total{kind="llm",outcome="succeeded"} 1`,
		`oxios_scheduler_agents{status="running"} 1`,
		`oxios_llm_requests_total{model="gpt-4.1-mini",outcome="ok",provider="openai"} 2`,
		`oxios_llm_tokens_total{direction="in",model="gpt-4.1-mini",provider="openai"} 90`,
		`oxios_llm_cost_usd_total{model="gpt-4.1-mini",provider="openai"}`,
		`oxios_llm_request_duration_seconds_count{model="gpt-4.1-mini",provider="openai"} 2`,
		`oxios_tool_calls_total{outcome="ok",tool="list_dir"} 1`,
		`oxios_tool_call_duration_seconds_count{tool="list_dir"} 1`,
		`oxios_events_published_total `,
		`oxios_sse_clients `,
		`oxios_http_requests_total{code="201",route="POST /api/v1/agents"} 2`,
		`oxios_http_request_duration_seconds_bucket{route="GET /api/v1/agents/{id}"`,
		`oxios_storage_bytes{stream="OXIOS_EVENTS"}`,
		`oxios_storage_bytes{stream="KV_agents"}`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}
