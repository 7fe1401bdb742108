package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

// Publisher stores events without waiting for each; *bus.Bus is one.
type Publisher interface {
	PublishAsync(ev bus.Event) (*bus.Pending, error)
}

// Approver asks a human about a tool call; *approval.Manager is one.
type Approver interface {
	Request(ctx context.Context, agentID, position, tool, args string, timeout time.Duration) (approval.Approval, error)
}

// Auditor appends to the audit trail; *audit.Log is one.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
}

// Budgets limit what agents use; *budget.Service is one.
type Budgets interface {
	// Reserve is asked before each model call of a run that has used
	// used: it reserves est, the call's estimate, in every budget the
	// agent is under, and returns what releases it once the call's usage
	// is spent and stored.
	Reserve(ctx context.Context, rec supervisor.Record, used supervisor.Usage, est oxios.BudgetUsage) (release func(), err error)
	// Spend records one call's usage (delta) of a run now at total.
	Spend(rec supervisor.Record, total, delta supervisor.Usage)
	// Sync waits until the usage spent so far is stored.
	Sync(ctx context.Context)
}

// ProviderConfig is one provider's settings. Empty fields take the usual
// environment variables, then the built-in defaults.
type ProviderConfig struct {
	BaseURL string
	APIKey  string
}

// Price is what a model costs, in USD per million tokens.
type Price struct {
	Input  float64
	Output float64
}

// Options configure a Runtime.
type Options struct {
	Providers map[string]ProviderConfig
	// Prices by "provider/model", over the built-in table.
	Prices map[string]Price
	// Policy is the configured default; a spec's policy is merged over it.
	Policy  tools.Policy
	Bus     Publisher
	State   tools.State
	Breaker *Breaker
	// Audit, if set, records every policy denial.
	Audit Auditor
	// Approvals, if set, asks humans about calls the policy marks "ask";
	// without it such calls are denied.
	Approvals Approver
	// Checkpoints, if set, keep each run's conversation so that it can go
	// on after a daemon restart.
	Checkpoints *Checkpoints
	// Budgets, if set, are checked before every model call and charged
	// after it.
	Budgets Budgets
	// MaxRetries of a model call on 429, 5xx or a lost connection: 0 is
	// the default (3), negative is none.
	MaxRetries int
	Logger     *slog.Logger
}

// Runtime runs language-model agents for the supervisor.
type Runtime struct {
	o         Options
	mu        sync.Mutex
	providers map[string]Provider
}

// New returns a runtime.
func New(o Options) *Runtime {
	if o.Breaker == nil {
		o.Breaker = NewBreaker(5, 30*time.Second)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 3
	}
	return &Runtime{o: o, providers: map[string]Provider{}}
}

// SetPolicy changes the configured default policy; runs started from now
// on use it.
func (rt *Runtime) SetPolicy(p tools.Policy) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.o.Policy = p
}

// Check validates an llm spec's model at spawn.
func (rt *Runtime) Check(spec *supervisor.Spec) error {
	if _, _, err := SplitModel(spec.Model); err != nil {
		if spec.Model == "" {
			return &supervisor.InvalidError{Field: "model", Msg: "is required (or set agent.default_model in config.toml): " + err.Error()}
		}
		return &supervisor.InvalidError{Field: "model", Msg: err.Error()}
	}
	return nil
}

// Resumable reports whether rec's run has a checkpoint to go on from.
func (rt *Runtime) Resumable(ctx context.Context, rec supervisor.Record) bool {
	if rt.o.Checkpoints == nil {
		return false
	}
	_, ok := rt.o.Checkpoints.load(ctx, rec.ID)
	return ok
}

// KeyEnv is each provider's API key variable, read from the daemon's
// environment when the config gives no key: the one map of it (the kernel
// and doctor say whether a key is set from it).
var KeyEnv = map[string]string{"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

// HasKey reports whether provider has a key: configured, or in this
// process's environment.
func HasKey(provider, configured string) bool {
	return configured != "" || (KeyEnv[provider] != "" && os.Getenv(KeyEnv[provider]) != "")
}

// provider returns the client of a provider, made on first use.
func (rt *Runtime) provider(name string) (Provider, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if p, ok := rt.providers[name]; ok {
		return p, nil
	}
	c := rt.o.Providers[name]
	if c.APIKey == "" && KeyEnv[name] != "" {
		c.APIKey = os.Getenv(KeyEnv[name])
	}
	rememberKey(c.APIKey)
	var p Provider
	switch name {
	case "openai":
		if c.BaseURL == "" {
			c.BaseURL = os.Getenv("OPENAI_BASE_URL")
		}
		if c.APIKey == "" {
			return nil, fmt.Errorf("the daemon has no OpenAI key: OPENAI_API_KEY is not set in the daemon's environment (the CLI's shell is not the daemon's), nor providers.openai.api_key in config.toml; set it there, or in $OXIOS_HOME/secrets/daemon.env, which the service unit reads, and restart the daemon")
		}
		p = newOpenAI("openai", c, max(rt.o.MaxRetries, 0))
	case "ollama":
		if c.BaseURL == "" {
			c.BaseURL = "http://127.0.0.1:11434/v1"
		}
		if c.APIKey == "" {
			c.APIKey = "ollama" // Ollama ignores it; the client needs one
		}
		p = newOpenAI("ollama", c, max(rt.o.MaxRetries, 0))
	case "anthropic":
		if c.APIKey == "" {
			return nil, fmt.Errorf("the daemon has no Anthropic key: ANTHROPIC_API_KEY is not set in the daemon's environment (the CLI's shell is not the daemon's), nor providers.anthropic.api_key in config.toml; set it there, or in $OXIOS_HOME/secrets/daemon.env, which the service unit reads, and restart the daemon")
		}
		p = newAnthropic(c, max(rt.o.MaxRetries, 0))
	default:
		return nil, fmt.Errorf("unknown provider %q", name)
	}
	rt.providers[name] = p
	return p, nil
}

// price returns the price of a model, if known. Local Ollama models cost
// nothing.
func (rt *Runtime) price(model string) (Price, bool) {
	if p, ok := rt.o.Prices[model]; ok {
		return p, true
	}
	if strings.HasPrefix(model, "ollama/") {
		return Price{}, true
	}
	p, ok := defaultPrices[model]
	return p, ok
}

// defaultPrices are list prices in USD per million tokens; config's
// [prices] overrides or extends them.
var defaultPrices = map[string]Price{
	"openai/gpt-4.1":                    {2.00, 8.00},
	"openai/gpt-4.1-mini":               {0.40, 1.60},
	"openai/gpt-4.1-nano":               {0.10, 0.40},
	"openai/gpt-4o":                     {2.50, 10.00},
	"openai/gpt-4o-mini":                {0.15, 0.60},
	"openai/o4-mini":                    {1.10, 4.40},
	"anthropic/claude-opus-4-1":         {15.00, 75.00},
	"anthropic/claude-sonnet-4-5":       {3.00, 15.00},
	"anthropic/claude-sonnet-4-0":       {3.00, 15.00},
	"anthropic/claude-haiku-4-5":        {1.00, 5.00},
	"anthropic/claude-3-5-haiku-latest": {0.80, 4.00},
}

const builtinSystem = `You are an agent running under oxios, an operating system for AI agents.
Work toward the goal you are given, step by step, using the tools provided.
Your workspace is %s; relative paths are resolved against it.
Every tool call is checked by a policy. A denied call returns an error that
says why: adapt, do not repeat the same call. Tool errors are information,
not the end of the task.
When the goal is done, answer with your final result and call no tools.`

// Run works rec's goal through the tool loop.
func (rt *Runtime) Run(ctx context.Context, rec supervisor.Record, hooks supervisor.Hooks) (supervisor.Progress, error) {
	progress := hooks.Progress
	spec := rec.Spec
	p := supervisor.Progress{Model: spec.Model}
	l, err := rt.prepare(rec, hooks)
	if err != nil {
		return p, err
	}
	provName, model, prov, env, system, defs := l.provName, l.model, l.prov, l.env, l.system, l.defs
	if rt.o.Budgets != nil {
		// The run's end is recorded after its usage is stored.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			rt.o.Budgets.Sync(ctx)
		}()
	}
	price, priced := rt.price(spec.Model)
	// Metrics name a model only if it is priced (a known or configured
	// one): a model name is free text, and each new one would add series
	// for ever.
	mlabel := model
	if _, listed := rt.o.Prices[spec.Model]; !listed && defaultPrices[spec.Model] == (Price{}) || len(mlabel) > 100 {
		mlabel = "other" // (a local ollama model is free, but its name still free text)
	}
	var cost float64
	evs := &events{rt: rt, agentID: rec.ID}
	defer evs.flush()
	cps := &checkpointing{rt: rt, id: rec.ID, wait: func() error { return nil }}
	defer cps.done()
	msgs := []Message{{Role: "user", Text: spec.Goal}}
	first := 1
	waiting := &waitCount{set: hooks.Waiting}
	if rt.o.Checkpoints != nil && !hooks.Resume {
		// A new run (a spawn or a restart) starts over.
		rt.o.Checkpoints.Delete(ctx, rec.ID)
	}
	if rt.o.Checkpoints != nil && hooks.Resume {
		if cp, ok := rt.o.Checkpoints.load(ctx, rec.ID); ok {
			// Resumed after a daemon restart: go on from the last step.
			msgs, p, cost, first = cp.Messages, cp.Progress, cp.Cost, cp.Progress.Steps+1
			progress(p)
			var answered bool
			if msgs, answered = rt.finishStep(ctx, env, evs, waiting, msgs, &p, progress); answered {
				return p, nil
			}
			if ctx.Err() != nil {
				return p, ctx.Err()
			}
		}
	}
	for step := first; ; step++ {
		if step > spec.MaxSteps {
			return p, fmt.Errorf("max steps reached (%d)", spec.MaxSteps)
		}
		if err := rt.o.Breaker.Allow(provName); err != nil {
			return p, err
		}
		req := Request{Model: model, System: system, Messages: msgs, Tools: defs, MaxTokens: maxTokens}
		release := func() {}
		if rt.o.Budgets != nil {
			// The run ends here, keeping what it has done and used.
			var err error
			if release, err = rt.o.Budgets.Reserve(ctx, rec, p.Usage, estimate(req, price, priced)); err != nil {
				return p, err
			}
		}
		out := newCoalescer(func(text string) { evs.publish("agent.output", map[string]any{"step": step, "text": text}) })
		t0 := time.Now()
		resp, err := prov.Complete(ctx, req, out.write)
		out.flush()
		rt.o.Breaker.Record(provName, err)
		rt.observe(ctx, provName, mlabel, t0, err)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return p, ctx.Err()
			}
			return p, err
		}
		p.Steps = step
		stepCost := rt.account(rec, &p, &cost, resp, price, priced, provName, mlabel)
		if rt.o.Budgets != nil {
			// The call's reservation goes once its usage is stored, so that
			// no node ever sees neither.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			rt.o.Budgets.Sync(sctx)
			cancel()
		}
		release()
		evs.publish("llm.response", map[string]any{"step": step, "model": spec.Model, "tokens_in": resp.TokensIn,
			"tokens_out": resp.TokensOut, "cost_usd": stepCost, "duration_ms": time.Since(t0).Milliseconds(), "tool_calls": len(resp.ToolCalls)})
		if resp.Text != "" {
			p.Output = resp.Text
		}
		msgs = append(msgs, Message{Role: "assistant", Text: resp.Text, ToolCalls: resp.ToolCalls})
		if len(resp.ToolCalls) == 0 {
			return p, nil
		}
		cps.maybe(checkpoint{Messages: msgs, Progress: p, Cost: cost}, needsApproval(env, resp.ToolCalls))
		msgs, _ = rt.finishStep(ctx, env, evs, waiting, msgs, &p, progress)
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
	}
}

func ptr[T any](v T) *T { return &v }

// maxTokens bounds each answer of a model.
const maxTokens = 8192

// estimate is what a call may use, for its reservation: one call, its
// prompt (about four bytes a token) and its longest answer, and their
// price.
func estimate(req Request, price Price, priced bool) oxios.BudgetUsage {
	in := len(req.System)
	for _, m := range req.Messages {
		in += len(m.Text)
		for _, c := range m.ToolCalls {
			in += len(c.Name) + len(c.Args)
		}
		for _, r := range m.Results {
			in += len(r.Content)
		}
	}
	for _, d := range req.Tools {
		in += len(d.Name) + len(d.Description) + 200
	}
	tokensIn := int64(in/4 + 1)
	e := oxios.BudgetUsage{Calls: 1, Tokens: tokensIn + int64(req.MaxTokens)}
	if priced {
		e.CostUSD = float64(tokensIn)*price.Input/1e6 + float64(req.MaxTokens)*price.Output/1e6
	}
	return e
}

// finishStep runs the tool calls of the last answer in msgs (for a
// checkpoint's, those that may not have run before the daemon stopped:
// they run again if they had) and adds their results. It reports whether
// that answer was the final one.
func (rt *Runtime) finishStep(ctx context.Context, env *tools.Env, evs *events, waiting *waitCount, msgs []Message, p *supervisor.Progress, progress func(supervisor.Progress)) ([]Message, bool) {
	last := msgs[len(msgs)-1]
	if last.Role != "assistant" {
		return msgs, false
	}
	if len(last.ToolCalls) == 0 {
		return msgs, true
	}
	results, calls := rt.runTools(ctx, env, evs, waiting, p.Steps, last.ToolCalls)
	p.ToolCalls = append(p.ToolCalls, calls...)
	p.Usage.ToolCalls += int64(len(calls))
	msgs = append(msgs, Message{Role: "tool", Results: results})
	evs.flush()
	progress(*p)
	return msgs, false
}

// checkpointing hands a run's checkpoints to the bucket: at most once a
// second (a checkpoint holds the whole, growing conversation), and always
// before a call waits for approval, so that the wait survives a restart.
// A run does not wait for one between steps, only for the one before it
// and at its end.
type checkpointing struct {
	rt   *Runtime
	id   string
	last time.Time
	wait func() error // the last one handed over, stored or not
}

func (c *checkpointing) maybe(cp checkpoint, force bool) {
	if c.rt.o.Checkpoints == nil || (!force && time.Since(c.last) < time.Second) {
		return
	}
	c.last = time.Now()
	c.done()
	c.wait = c.rt.o.Checkpoints.saveAsync(c.id, cp)
}

// done waits for the last checkpoint handed over.
func (c *checkpointing) done() {
	if err := c.wait(); err != nil {
		c.rt.o.Logger.Warn("checkpoint", "agent", c.id, "err", err)
	}
	c.wait = func() error { return nil }
}

// observe counts a model call and times it.
func (rt *Runtime) observe(ctx context.Context, provName, mlabel string, t0 time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
		if ctx.Err() != nil {
			outcome = "cancelled"
		}
	}
	metrics.LLMRequests.WithLabelValues(provName, mlabel, outcome).Inc()
	metrics.LLMLatency.WithLabelValues(provName, mlabel).Observe(time.Since(t0).Seconds())
}

// account adds a response's usage (and cost, if the model is priced) to
// p and *cost, to the metrics and to the budgets; it returns the step's
// cost, nil when unpriced.
func (rt *Runtime) account(rec supervisor.Record, p *supervisor.Progress, cost *float64, resp Response, price Price, priced bool, provName, mlabel string) *float64 {
	metrics.LLMTokens.WithLabelValues(provName, mlabel, "in").Add(float64(resp.TokensIn))
	metrics.LLMTokens.WithLabelValues(provName, mlabel, "out").Add(float64(resp.TokensOut))
	p.Usage.LLMCalls++
	p.Usage.TokensIn += resp.TokensIn
	p.Usage.TokensOut += resp.TokensOut
	var stepCost *float64
	if priced {
		c := float64(resp.TokensIn)*price.Input/1e6 + float64(resp.TokensOut)*price.Output/1e6
		*cost += c
		stepCost, p.Usage.CostUSD = &c, ptr(*cost)
		metrics.LLMCost.WithLabelValues(provName, mlabel).Add(c)
	}
	if rt.o.Budgets != nil {
		rt.o.Budgets.Spend(rec, p.Usage, supervisor.Usage{TokensIn: resp.TokensIn, TokensOut: resp.TokensOut, CostUSD: stepCost, LLMCalls: 1})
	}
	return stepCost
}

// loop is what a run works with, made once before its first step.
type loop struct {
	provName, model string
	prov            Provider
	env             *tools.Env
	system          string
	defs            []ToolDef
}

// prepare makes a run's provider client, its policy gate and tool
// environment, its system prompt and its tool definitions.
func (rt *Runtime) prepare(rec supervisor.Record, hooks supervisor.Hooks) (*loop, error) {
	spec := rec.Spec
	provName, model, err := SplitModel(spec.Model)
	if err != nil {
		return nil, err
	}
	prov, err := rt.provider(provName)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	policy := rt.o.Policy
	rt.mu.Unlock()
	if spec.Policy != nil {
		policy = policy.Merge(*spec.Policy)
	}
	gate, err := tools.NewGate(spec.Dir, policy)
	if err != nil {
		return nil, err
	}
	// The workspace was stored resolved at spawn: if it now resolves
	// elsewhere, a link was put in its place, and following it would hand
	// the file tools and the sandbox another directory.
	if spec.Sandbox == nil || spec.Sandbox.Mode != sandbox.Off {
		if gate.Workspace() != filepath.Clean(spec.Dir) {
			return nil, &sandbox.UnavailableError{Why: spec.Dir + " is now reached through a symlink; give the path it names"}
		}
	}
	l := &loop{provName: provName, model: model, prov: prov,
		env:    &tools.Env{Gate: gate, Sandbox: supervisor.SandboxPolicy(spec, ""), AgentID: rec.ID, Spawner: hooks.Spawner, State: rt.o.State},
		system: fmt.Sprintf(builtinSystem, gate.Workspace())}
	if spec.System != "" {
		l.system += "\n\n" + spec.System
	}
	for _, d := range tools.Defs() {
		l.defs = append(l.defs, ToolDef{Name: d.Name, Description: d.Description, Schema: d.Schema})
	}
	return l, nil
}
