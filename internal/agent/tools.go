package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/tools"
)

// runTools runs the calls of one response concurrently, each through the
// policy gate, and returns their results in order.
func (rt *Runtime) runTools(ctx context.Context, env *tools.Env, evs *events, waiting *waitCount, step int, calls []ToolCall) ([]ToolResult, []supervisor.ToolCall) {
	results := make([]ToolResult, len(calls))
	recs := make([]supervisor.ToolCall, len(calls))
	var mu sync.Mutex // guards results and recs against a call left behind
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := truncate(string(c.Args), 500)
			evs.publish("tool.started", map[string]any{"step": step, "call_id": c.ID, "tool": c.Name, "args": args})
			t0 := time.Now()
			// The call's place in the run names what it starts (an approval,
			// a sub-agent), so a run resumed after a restart finds them again.
			position := fmt.Sprintf("%d.%d", step, i)
			out, err := rt.call(tools.WithCallKey(ctx, position), env, waiting, c, position)
			d := time.Since(t0)
			outcome := "ok"
			if err != nil {
				outcome = "error"
				if _, denied := errors.AsType[*tools.Denied](err); denied {
					outcome = "denied"
				}
			}
			if tools.Known(c.Name) { // a made-up tool name must not grow the label set
				metrics.ToolCalls.WithLabelValues(c.Name, outcome).Inc()
				metrics.ToolLatency.WithLabelValues(c.Name).Observe(d.Seconds())
			} else {
				metrics.ToolCalls.WithLabelValues("unknown", outcome).Inc()
			}
			rec := supervisor.ToolCall{Step: step, Name: c.Name, Args: args, DurationMS: d.Milliseconds()}
			if out == "" {
				out = "(no output)" // an empty tool result is refused by some APIs
			}
			res := ToolResult{CallID: c.ID, Name: c.Name, Content: out}
			if err != nil {
				res.Content, res.IsError = "error: "+err.Error(), true
				rec.Error = err.Error()
				var denied *tools.Denied
				if errors.As(err, &denied) {
					rec.Denied = true
					evs.publish("policy.denied", denied)
					rt.auditDenial(env.AgentID, denied)
				}
			} else {
				rec.Result = truncate(out, 200)
			}
			if ctx.Err() != nil {
				return // the run has ended; nothing of this call is recorded
			}
			evs.publish("tool.finished", map[string]any{"step": step, "call_id": c.ID, "tool": c.Name,
				"duration_ms": d.Milliseconds(), "error": err != nil, "denied": rec.Denied})
			mu.Lock()
			results[i], recs[i] = res, rec
			mu.Unlock()
		}()
	}
	// A kill or timeout waits a moment for the calls to end with their
	// context, but not for a tool that ignores it.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(results), slices.Clone(recs)
}

// call runs one tool call; one the policy marks "ask" first waits for a
// human's approval (the agent is waiting_approval meanwhile), and a
// rejection is the tool's error, which the model sees.
func (rt *Runtime) call(ctx context.Context, env *tools.Env, waiting *waitCount, c ToolCall, position string) (string, error) {
	if rt.o.Approvals == nil || !env.Gate.NeedsApproval(c.Name) {
		return tools.Call(ctx, env, c.Name, c.Args)
	}
	waiting.add(ctx, 1)
	a, err := rt.o.Approvals.Request(ctx, env.AgentID, position, c.Name, string(c.Args), env.Gate.AskTimeout())
	waiting.add(ctx, -1)
	if err != nil {
		return "", err
	}
	if a.State != approval.Approved {
		return "", fmt.Errorf("rejected by %s: %s", a.DecidedBy, a.Reason)
	}
	approved := *env
	approved.Approved = true
	return tools.Call(ctx, &approved, c.Name, c.Args)
}

func needsApproval(env *tools.Env, calls []ToolCall) bool {
	for _, c := range calls {
		if env.Gate.NeedsApproval(c.Name) {
			return true
		}
	}
	return false
}

// waitCount tells the supervisor when the first of a step's calls starts
// waiting for approval and when the last stops.
type waitCount struct {
	mu  sync.Mutex
	n   int
	set func(bool)
}

func (w *waitCount) add(ctx context.Context, d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.n
	w.n += d
	// A run that is ending (killed, timed out, the daemon stopping) is not
	// "running" again: its state is the supervisor's to set.
	if w.set != nil && (before == 0) != (w.n == 0) && ctx.Err() == nil {
		w.set(w.n > 0)
	}
}

// auditDenial records a policy decision against an agent's tool call.
func (rt *Runtime) auditDenial(agentID string, d *tools.Denied) {
	if rt.o.Audit == nil {
		return
	}
	action := "policy.denied"
	if d.Rule == "ask" {
		action = "policy.ask"
	}
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	if _, err := rt.o.Audit.Append(ctx, audit.Entry{Actor: "agent:" + agentID, Action: action, Resource: d.Tool + ":" + d.Target,
		Outcome: "denied", Detail: map[string]any{"rule": d.Rule, "reason": d.Reason}}); err != nil {
		rt.o.Logger.Error("audit", "action", action, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// events publishes a run's events without a round trip each: they are
// handed to the log in order, and flush waits until all are stored (before
// the run goes on, and before it ends, so that the agent's terminal event
// comes after them).
type events struct {
	rt      *Runtime
	agentID string
	mu      sync.Mutex
	pending []*bus.Pending
}

func (e *events) publish(typ string, data any) {
	if e.rt.o.Bus == nil {
		return
	}
	b, _ := json.Marshal(data)
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.rt.o.Bus.PublishAsync(bus.Event{Type: typ, AgentID: e.agentID, Data: b})
	if err != nil {
		e.rt.o.Logger.Error("publish event", "type", typ, "agent", e.agentID, "err", err)
		return
	}
	e.pending = append(e.pending, p)
}

func (e *events) flush() {
	e.mu.Lock()
	pending := e.pending
	e.pending = nil
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	for _, p := range pending {
		if ev, err := p.Wait(ctx); err != nil {
			e.rt.o.Logger.Error("publish event", "type", ev.Type, "agent", e.agentID, "err", err)
		}
	}
}

// coalescer gathers streamed text and hands it on at most every 100 ms, so
// a fast stream becomes a few events, not one per token.
type coalescer struct {
	out   sync.Mutex // keeps emits in order
	mu    sync.Mutex
	buf   strings.Builder
	timer *time.Timer
	emit  func(string)
}

func newCoalescer(emit func(string)) *coalescer { return &coalescer{emit: emit} }

func (c *coalescer) write(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.WriteString(s)
	if c.timer == nil {
		c.timer = time.AfterFunc(100*time.Millisecond, c.flush)
	}
}

func (c *coalescer) flush() {
	c.out.Lock()
	defer c.out.Unlock()
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	text := c.buf.String()
	c.buf.Reset()
	c.mu.Unlock()
	if text != "" {
		c.emit(text)
	}
}
