package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/leaktest"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		serveForBenchmark() // a model server in its own process; never returns
	}
	leaktest.VerifyTestMain(m)
}

const testKey = "sk-test-7f3a9c1e5b2d4a6f8e0c"

// stack is a supervisor with this runtime, on a real embedded backbone.
type stack struct {
	t         testing.TB
	sup       *supervisor.Supervisor
	rt        *Runtime
	bus       *bus.Bus
	llm       *agenttest.Server
	approvals *approval.Manager
	budgets   *budget.Service
	js        jetstream.JetStream
}

func newStack(t *testing.T, llm *agenttest.Server, mod func(*Options)) *stack {
	t.Helper()
	return newStackWith(t, llm, mod, 4)
}

// newStackTB is newStack for benchmarks, with maxLLM language-model slots.
func newStackTB(b *testing.B, llm *agenttest.Server, maxLLM int) *stack {
	return newStackWith(b, llm, nil, maxLLM)
}

// newStackAt is newStackTB with the model server at url.
func newStackAt(b *testing.B, url string, maxLLM int) *stack {
	return newStackURL(b, url, nil, maxLLM)
}

func newStackWith(t testing.TB, llm *agenttest.Server, mod func(*Options), maxLLM int) *stack {
	s := newStackURL(t, llm.URL, mod, maxLLM)
	s.llm = llm
	return s
}

func newStackURL(t testing.TB, url string, mod func(*Options), maxLLM int) *stack {
	t.Helper()
	bb := backbonetest.Start(t, "1s")
	ctx := context.Background()
	b, err := bus.Open(ctx, bb.JS, bus.Options{Node: "test", MaxAge: time.Hour, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	st, err := store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	apv, err := approval.Open(ctx, bb.JS, 1, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apv.Close)
	cps, err := OpenCheckpoints(ctx, bb.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	bud, err := budget.Open(ctx, bb.JS, 1, "test", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bud.Close)
	o := Options{
		Approvals: apv, Checkpoints: cps, Budgets: bud,
		Providers: map[string]ProviderConfig{
			"openai":    {BaseURL: url + "/v1", APIKey: testKey},
			"anthropic": {BaseURL: url, APIKey: testKey},
			"ollama":    {BaseURL: url + "/v1"},
		},
		Bus: b, State: st, MaxRetries: 2,
	}
	if mod != nil {
		mod(&o)
	}
	rt := New(o)
	home := t.TempDir()
	sup, err := supervisor.Open(ctx, supervisor.Options{
		JS: bb.JS, Bus: b, Scheduler: scheduler.New(scheduler.Limits{MaxRunning: max(10, maxLLM), MaxRunningLLM: maxLLM}), Node: "test",
		WorkspacesDir: filepath.Join(home, "workspaces"), LogDir: filepath.Join(home, "logs"),
		Defaults: supervisor.SpecDefaults{StopTimeout: time.Second, Model: "openai/gpt-4.1-mini", MaxSteps: 10, Timeout: 10 * time.Minute},
		Retain:   100, RetainFor: time.Hour, LLM: rt, Budgets: bud,
		OnEnd: func(r supervisor.Record) {
			apv.AbandonAgent(context.Background(), r.ID, "the agent ended")
			cps.Delete(context.Background(), r.ID)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sup.Close(ctx)
	})
	return &stack{t: t, sup: sup, rt: rt, bus: b, approvals: apv, budgets: bud, js: bb.JS}
}

func (s *stack) run(spec supervisor.Spec) supervisor.Record {
	s.t.Helper()
	spec.Kind = supervisor.KindLLM
	r, err := s.sup.Spawn(context.Background(), spec)
	if err != nil {
		s.t.Fatalf("spawn: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err = s.sup.Wait(ctx, r.ID)
	if err != nil || !r.State.Terminal() {
		s.t.Fatalf("wait: %v %s", err, r.State)
	}
	return r
}

func (s *stack) events(agent string) []bus.Event {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := s.bus.Subscribe(ctx, bus.Filter{Agent: agent}, bus.SubscribeOptions{UntilCaughtUp: true})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []bus.Event
	for ev := range sub.C {
		out = append(out, ev)
	}
	return out
}

func count(evs []bus.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// A multi-step tool loop, over each provider's wire protocol: the model
// writes a file, reads it back, and answers. Usage and cost are recorded.
func TestToolLoopWritesAFile(t *testing.T) {
	for _, model := range []string{"openai/gpt-4.1-mini", "anthropic/claude-sonnet-4-5"} {
		t.Run(strings.Split(model, "/")[0], func(t *testing.T) {
			llm := agenttest.New(t, testKey,
				agenttest.Reply{Text: "Writing it.", Calls: []agenttest.ToolCall{agenttest.Call("c1", "write_file", map[string]string{"path": "notes/hello.txt", "content": "hello, world"})}, In: 100, Out: 20},
				agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c2", "read_file", map[string]string{"path": "notes/hello.txt"}), agenttest.Call("c3", "list_dir", map[string]string{"path": "notes"})}, In: 150, Out: 10},
				agenttest.Reply{Text: "The file says hello, world.", In: 200, Out: 8},
			)
			s := newStack(t, llm, nil)
			r := s.run(supervisor.Spec{Goal: "write hello.txt", Model: model})
			if r.State != supervisor.Succeeded || r.Reason != "completed" || r.Output != "The file says hello, world." {
				t.Fatalf("%s %q output %q", r.State, r.Reason, r.Output)
			}
			if b, err := os.ReadFile(filepath.Join(r.Spec.Dir, "notes/hello.txt")); err != nil || string(b) != "hello, world" {
				t.Fatalf("file: %q %v", b, err)
			}
			if r.Steps != 3 || len(r.ToolCalls) != 3 || r.ToolCalls[0].Name != "write_file" || r.ToolCalls[1].Result != "hello, world" || r.ToolCalls[2].Step != 2 {
				t.Fatalf("steps %d tool calls %+v", r.Steps, r.ToolCalls)
			}
			u := r.Usage
			if u.TokensIn != 450 || u.TokensOut != 38 || u.LLMCalls != 3 || u.ToolCalls != 3 || u.CostUSD == nil || r.Model != model {
				t.Fatalf("usage %+v model %s", u, r.Model)
			}
			price := defaultPrices[model]
			if want := 450*price.Input/1e6 + 38*price.Output/1e6; *u.CostUSD < want*0.999 || *u.CostUSD > want*1.001 {
				t.Fatalf("cost %v, want %v", *u.CostUSD, want)
			}
			// The tools are described in the wire format.
			tools, _ := json.Marshal(llm.Request(0)["tools"])
			if model == "openai/gpt-4.1-mini" && !strings.Contains(string(tools), `{"function":{"description":"Read a text file. Paths are relative to your workspace.","name":"read_file","parameters":{"additionalProperties":false,"properties":{"path":{"description":"file to read","type":"string"}},"required":["path"],"type":"object"}},"type":"function"}`) {
				t.Fatalf("tools sent: %s", tools)
			}
			if model != "openai/gpt-4.1-mini" && !strings.Contains(string(tools), `"input_schema":{"additionalProperties":false,"properties":{"path":{"description":"file to read","type":"string"}},"required":["path"],"type":"object"},"name":"read_file"`) {
				t.Fatalf("tools sent: %s", tools)
			}
			// The tool result went back to the model with its call id.
			if m := llm.MessagesJSON(2); !strings.Contains(m, "hello, world") || !strings.Contains(m, "c2") {
				t.Fatalf("third request's messages: %s", m)
			}
			evs := s.events(r.ID)
			if count(evs, "llm.response") != 3 || count(evs, "tool.started") != 3 || count(evs, "tool.finished") != 3 ||
				count(evs, "agent.output") == 0 || count(evs, "agent.succeeded") != 1 {
				t.Fatalf("events %v", evs)
			}
		})
	}
}

// Every way out of the workspace is denied; the denial goes back to the
// model as a tool error and is published as policy.denied, and the agent
// carries on.
func TestPathEscapesAreDenied(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s3cret"), 0o600)
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{
			agenttest.Call("a", "read_file", map[string]string{"path": "../../../../../../etc/passwd"}),
			agenttest.Call("b", "read_file", map[string]string{"path": filepath.Join(outside, "secret")}),
			agenttest.Call("c", "read_file", map[string]string{"path": "link/secret"}),
			agenttest.Call("d", "exec", map[string]any{"command": "cat", "args": []string{"/etc/passwd"}}),
		}},
		agenttest.Reply{Text: "I cannot read those."},
	)
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "link"))
	r := s.run(supervisor.Spec{Goal: "read secrets", Dir: dir})
	if r.State != supervisor.Succeeded {
		t.Fatalf("%s %q", r.State, r.Reason)
	}
	for _, c := range r.ToolCalls {
		if !c.Denied || c.Result != "" {
			t.Fatalf("call not denied: %+v", c)
		}
	}
	if m := llm.MessagesJSON(1); strings.Contains(m, "s3cret") || strings.Count(m, "denied by policy") != 4 {
		t.Fatalf("what the model saw: %s", m)
	}
	if n := count(s.events(r.ID), "policy.denied"); n != 4 {
		t.Fatalf("%d policy.denied events", n)
	}
}

func TestMaxSteps(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("x", "list_dir", map[string]string{})}})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "loop for ever", MaxSteps: 3})
	if r.State != supervisor.Failed || r.Reason != "max steps reached (3)" || r.Steps != 3 || llm.Count() != 3 {
		t.Fatalf("%s %q steps %d requests %d", r.State, r.Reason, r.Steps, llm.Count())
	}
}

// A 429 with Retry-After is retried by the SDK, after the delay asked for.
func TestRateLimitIsRetried(t *testing.T) {
	for _, model := range []string{"openai/gpt-4.1-mini", "anthropic/claude-sonnet-4-5"} {
		t.Run(strings.Split(model, "/")[0], func(t *testing.T) {
			llm := agenttest.New(t, testKey, agenttest.Reply{Status: 429, RetryAfter: "200", Message: "Rate limit reached"}, agenttest.Reply{Text: "ok"})
			s := newStack(t, llm, nil)
			start := time.Now()
			r := s.run(supervisor.Spec{Goal: "hi", Model: model})
			if r.State != supervisor.Succeeded || r.Output != "ok" || llm.Count() != 2 {
				t.Fatalf("%s %q, %d requests", r.State, r.Reason, llm.Count())
			}
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Fatalf("retried after %s, before the 200ms Retry-After", d)
			}
		})
	}
}

// A bad key fails the agent with the provider's message, never the key.
func TestUnauthorized(t *testing.T) {
	llm := agenttest.New(t, "another-key", agenttest.Reply{Text: "never"})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "hi"})
	if r.State != supervisor.Failed || !strings.HasPrefix(r.Reason, "provider openai: HTTP 401: Incorrect API key provided") {
		t.Fatalf("%s %q", r.State, r.Reason)
	}
	if llm.Count() != 1 {
		t.Fatalf("a 401 was retried: %d requests", llm.Count())
	}
}

// The API key appears in no record and no event.
func TestKeyNeverRecorded(t *testing.T) {
	llm := agenttest.New(t, "another-key", agenttest.Reply{Text: "never"})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "hi"})
	b, _ := json.Marshal(r)
	evs, _ := json.Marshal(s.events(""))
	if strings.Contains(string(b), testKey) || strings.Contains(string(evs), testKey) {
		t.Fatal("the API key is in a record or an event")
	}
	if !strings.Contains(llm.Header(0).Get("Authorization"), testKey) {
		t.Fatal("the key was not sent to the provider at all")
	}
}

func TestMissingKey(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "")
	llm := agenttest.New(t, testKey)
	s := newStack(t, llm, func(o *Options) { o.Providers["openai"] = ProviderConfig{BaseURL: llm.URL + "/v1"} })
	r := s.run(supervisor.Spec{Goal: "hi"})
	if r.State != supervisor.Failed || !strings.Contains(r.Reason, "OPENAI_API_KEY is not set in the daemon's environment") {
		t.Fatalf("%s %q", r.State, r.Reason)
	}
}

// A kill during a model call ends the agent killed, promptly.
func TestKillDuringModelCall(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Hang: true})
	s := newStack(t, llm, nil)
	r, err := s.sup.Spawn(context.Background(), supervisor.Spec{Kind: supervisor.KindLLM, Goal: "think hard"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for llm.Count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	k, err := s.sup.Kill(context.Background(), r.ID, -1)
	if err != nil || k.State != supervisor.Killed || time.Since(start) > 2*time.Second {
		t.Fatalf("kill: %v %s after %s", err, k.State, time.Since(start))
	}
}

// After enough failed calls in a row, agents fail fast while the provider
// is down, with a clear reason.
func TestCircuitBreaker(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Status: 500, Message: "boom"})
	s := newStack(t, llm, func(o *Options) { o.Breaker = NewBreaker(2, time.Minute); o.MaxRetries = -1 })
	for range 2 {
		if r := s.run(supervisor.Spec{Goal: "hi"}); !strings.Contains(r.Reason, "HTTP 500: boom") {
			t.Fatalf("%q", r.Reason)
		}
	}
	before := llm.Count()
	r := s.run(supervisor.Spec{Goal: "hi"})
	if r.State != supervisor.Failed || !strings.Contains(r.Reason, "provider openai: unavailable") || llm.Count() != before {
		t.Fatalf("%s %q, requests %d -> %d", r.State, r.Reason, before, llm.Count())
	}
}

// A model without a price has no cost: null, not zero.
func TestUnknownModelHasNoCost(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "hi", In: 10, Out: 5})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "hi", Model: "openai/some-new-model"})
	if r.Usage.CostUSD != nil || r.Usage.TokensIn != 10 {
		t.Fatalf("usage %+v", r.Usage)
	}
	// A price from config gives it one.
	s2 := newStack(t, agenttest.New(t, testKey, agenttest.Reply{Text: "hi", In: 1000000, Out: 0}), func(o *Options) {
		o.Prices = map[string]Price{"openai/some-new-model": {Input: 2, Output: 4}}
	})
	if r := s2.run(supervisor.Spec{Goal: "hi", Model: "openai/some-new-model"}); r.Usage.CostUSD == nil || *r.Usage.CostUSD != 2 {
		t.Fatalf("usage %+v", r.Usage)
	}
}

func TestSpawnValidation(t *testing.T) {
	s := newStack(t, agenttest.New(t, testKey), nil)
	for _, c := range []struct {
		spec  supervisor.Spec
		field string
	}{
		{supervisor.Spec{Kind: "llm"}, "goal"},
		{supervisor.Spec{Kind: "llm", Goal: "x", Model: "mistral/large"}, "model"},
		{supervisor.Spec{Kind: "llm", Goal: "x", Model: "gpt-4"}, "model"},
		{supervisor.Spec{Kind: "llm", Goal: "x", MaxSteps: -1}, "max_steps"},
		{supervisor.Spec{Kind: "llm", Goal: "x", Command: "ls"}, "command"},
		{supervisor.Spec{Kind: "llm", Goal: "x", Policy: &tools.Policy{Ask: []string{"nope"}}}, "policy.ask[0]"},
	} {
		_, err := s.sup.Spawn(context.Background(), c.spec)
		var inv *supervisor.InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("%+v: %v, want %s", c.spec, err, c.field)
		}
	}
	_, err := s.sup.Spawn(context.Background(), supervisor.Spec{Kind: "llm", Goal: "x", Model: "mistral/large"})
	if err == nil || !strings.Contains(err.Error(), "openai, anthropic, ollama") {
		t.Fatalf("unknown provider error does not list the providers: %v", err)
	}
}

// spawn_agent runs a sub-agent through the scheduler and returns its
// answer; the depth is limited.
func TestSubAgent(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("s", "spawn_agent", map[string]string{"goal": "say 42"})}},
		agenttest.Reply{Text: "42"},
		agenttest.Reply{Text: "The sub-agent said 42."},
	)
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "delegate"})
	if r.State != supervisor.Succeeded || r.ToolCalls[0].Result != "42" {
		t.Fatalf("%s %q %+v", r.State, r.Reason, r.ToolCalls)
	}
	subs, _ := s.sup.List(supervisor.Filter{Kind: "llm"}, 0, "")
	if len(subs) != 2 || subs[0].Spec.Parent != r.ID || subs[0].Spec.Dir != r.Spec.Dir {
		t.Fatalf("sub-agents %+v", subs)
	}
}

// ollama is the OpenAI-compatible provider at its own URL, without a key of
// the user's, and its local models cost nothing.
func TestOllamaPreset(t *testing.T) {
	llm := agenttest.New(t, "ollama", agenttest.Reply{Text: "local", In: 10, Out: 2})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "hi", Model: "ollama/llama3.2"})
	if r.State != supervisor.Succeeded || r.Output != "local" || r.Usage.CostUSD == nil || *r.Usage.CostUSD != 0 {
		t.Fatalf("%s %q %+v", r.State, r.Reason, r.Usage)
	}
	if m := llm.Request(0)["model"]; m != "llama3.2" {
		t.Fatalf("model sent: %v", m)
	}
}

// Provider errors reach reasons, events and logs: nothing in them may look
// like a credential.
func TestScrub(t *testing.T) {
	rememberKey("my-configured-key-123")
	for in, want := range map[string]string{
		"Incorrect API key provided: sk-proj-abcdefghijklmnop": "Incorrect API key provided: [REDACTED]",
		"Authorization: Bearer abc.def.ghijklmnop":             "Authorization: [REDACTED]",
		"bad token oxs_0123456789abcdef0123":                   "bad token [REDACTED]",
		"key my-configured-key-123 is wrong":                   "key [REDACTED] is wrong",
		`{"api_key": "zzzzzzzzzz"}`:                            `{"api_key": "[REDACTED]"}`,
		"model gpt-4.1-mini not found":                         "model gpt-4.1-mini not found",
	} {
		if got := (&ProviderError{Provider: "openai", Message: in}).Error(); got != "provider openai: "+want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}
