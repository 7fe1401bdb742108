package oxios

import (
	"time"
	"unicode/utf8"
)

// State is where an agent is in its lifecycle (see DESIGN.md).
type State string

// The states of an agent. Succeeded, failed and killed are terminal.
const (
	Queued          State = "queued"
	Starting        State = "starting"
	Running         State = "running"
	WaitingApproval State = "waiting_approval"
	Backoff         State = "backoff"
	Succeeded       State = "succeeded"
	Failed          State = "failed"
	Killed          State = "killed"
)

// States lists every state, in lifecycle order.
var States = []State{Queued, Starting, Running, WaitingApproval, Backoff, Succeeded, Failed, Killed}

// Terminal reports whether the agent has ended.
func (s State) Terminal() bool { return s == Succeeded || s == Failed || s == Killed }

// Usage is what an agent consumed. Process agents use none of it; the
// fields are filled by language-model agents.
type Usage struct {
	TokensIn  int64    `json:"tokens_in"`
	TokensOut int64    `json:"tokens_out"`
	CostUSD   *float64 `json:"cost_usd"`
	LLMCalls  int64    `json:"llm_calls"`
	ToolCalls int64    `json:"tool_calls"`
}

// Record is an agent as stored in the agents bucket and served by the API.
type Record struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	State State  `json:"state"`
	// Reason says why the agent is in its state: how it ended, or why it
	// was last (re)started.
	Reason string `json:"reason"`
	Node   string `json:"node"`
	// Placed says why the agent runs on its node.
	Placed string `json:"placed,omitempty"`
	PID    int    `json:"pid"`
	// ProcStart is the kernel's start time of PID; with PID it identifies
	// the process across a daemon restart.
	ProcStart uint64 `json:"proc_start,omitempty"`
	// Restarts counts automatic restarts by the restart policy.
	Restarts int    `json:"restarts"`
	ExitCode *int   `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// QueuePosition is the 1-based place in the scheduler's queue while
	// queued. It is not stored.
	QueuePosition int `json:"queue_position,omitempty"`
	// QueueReason says, while queued, which limit the agent waits for
	// ("queued: 256 of 256 running"). It is not stored.
	QueueReason string     `json:"queue_reason,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at"`
	// NextStartAt is when an agent in backoff starts again.
	NextStartAt *time.Time `json:"next_start_at,omitempty"`
	Usage       Usage      `json:"usage"`
	// Model, Output, Steps and ToolCalls describe a language-model agent's
	// run: the model it used, its final (or, if it failed, latest) text,
	// the loop steps taken and every tool call.
	Model string `json:"model,omitempty"`
	// Output is at most OutputPreview bytes of the text: the start of it
	// when OutputTruncated, and the whole is served by Supervisor.Output
	// (GET /api/v1/agents/{id}/output) from the outputs bucket.
	Output string `json:"output,omitempty"`
	// OutputBytes is the size of the whole output.
	OutputBytes     int64      `json:"output_bytes,omitempty"`
	OutputTruncated bool       `json:"output_truncated,omitempty"`
	Steps           int        `json:"steps,omitempty"`
	ToolCalls       []ToolCall `json:"tool_calls,omitempty"`
	Spec            Spec       `json:"spec"`
	// RecentRestarts are the times of the automatic restarts still inside
	// the restart window, for the intensity limit across daemon restarts.
	RecentRestarts []time.Time `json:"recent_restarts,omitempty"`
	// Backoffs counts consecutive restarts since the last stable run.
	Backoffs int `json:"backoffs,omitempty"`
	// DefaultDir is set when Spec.Dir is the agent's own workspace, which
	// is deleted with the record.
	DefaultDir bool `json:"default_dir,omitempty"`
	// Sandbox is the sandbox the agent's process (for an llm agent, its
	// exec-tool programs) got at its latest start, and what of its spec's
	// sandbox could not be enforced.
	Sandbox *SandboxEffective `json:"sandbox,omitempty"`
}

// ToolCall is one tool call of a language-model agent, as recorded.
type ToolCall struct {
	Step int    `json:"step"`
	Name string `json:"name"`
	// Args are the call's arguments, truncated.
	Args string `json:"args"`
	// Result is the start of what the tool returned.
	Result     string `json:"result,omitempty"`
	Error      string `json:"error,omitempty"`
	Denied     bool   `json:"denied,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// MaxToolCalls is how many tool calls a record keeps (the latest ones).
const MaxToolCalls = 500

// Bounds on what one record holds, so that every record fits in one
// message of the backbone: a record that cannot be written would be a state
// nobody can rely on.
const (
	// OutputPreview is how much of an llm agent's output the record keeps.
	OutputPreview = 64 << 10
	// MaxOutput is the most of an output that is stored (in the outputs
	// bucket); beyond it the output is cut, and says so.
	MaxOutput = 64 << 20
)

// Clip returns s cut to at most n bytes, at a character boundary.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Spec says what an agent is. Durations are Go duration strings ("10s");
// Defaults fills every omitted field, and the record keeps the result.
type Spec struct {
	Kind    string            `json:"kind"`
	Name    string            `json:"name"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// SecretEnv names variables whose values are read, at each start, from
	// secrets/env/NAME; they are never stored, shown or logged.
	SecretEnv []string          `json:"secret_env,omitempty"`
	Dir       string            `json:"dir"`
	Priority  string            `json:"priority"`
	Labels    map[string]string `json:"labels,omitempty"`
	Restart   Restart           `json:"restart"`
	// StopSignal is sent to the process group on kill, before SIGKILL.
	StopSignal string `json:"stop_signal"`
	// StopTimeout is the grace between StopSignal and SIGKILL.
	StopTimeout string `json:"stop_timeout"`
	// Timeout ends each run that lasts longer; "0s" is none.
	Timeout string `json:"timeout"`

	// Goal, Model, System, MaxSteps and Policy are for llm agents.
	Goal string `json:"goal,omitempty"`
	// Model is provider/model, e.g. openai/gpt-4.1-mini.
	Model    string `json:"model,omitempty"`
	System   string `json:"system,omitempty"`
	MaxSteps int    `json:"max_steps,omitempty"`
	// Policy narrows or widens the configured policy of what the agent's
	// tools may touch.
	Policy *Policy `json:"policy,omitempty"`
	// Parent is the agent that spawned this one with spawn_agent.
	Parent string `json:"parent,omitempty"`
	// Budget caps what one run of an llm agent uses, and says what the
	// agent does when a budget it is under is exhausted when it would start.
	Budget *SpecBudget `json:"budget,omitempty"`
	// Sandbox confines a process agent, or an llm agent's exec-tool
	// programs; omitted fields keep the configured defaults, which
	// Normalize fills in.
	Sandbox *SandboxSpec `json:"sandbox,omitempty"`
	// Placement says which nodes of a cluster may run the agent.
	Placement *Placement `json:"placement,omitempty"`
}

// Placement constrains where in a cluster an agent runs. Without it, an
// agent runs on the node with the most free room.
type Placement struct {
	// Node is the one node that may run it.
	Node string `json:"node,omitempty"`
	// Labels must all be among a node's node_labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Spread is a node label key: the agent goes to the value of it that
	// runs the fewest live agents of the same name.
	Spread string `json:"spread,omitempty"`
}

// SpecBudget is an llm agent's own budget. Zero limits are none.
type SpecBudget struct {
	Tokens  int64   `json:"tokens,omitempty"`
	CostUSD float64 `json:"cost_usd,omitempty"`
	Calls   int64   `json:"calls,omitempty"`
	// OnExhausted is "fail" (the agent ends failed, "budget exhausted")
	// or "wait" (it stays queued until the budget's window frees).
	OnExhausted string `json:"on_exhausted,omitempty"`
}

// Ways an agent meets an exhausted budget at admission.
const (
	BudgetFail = "fail"
	BudgetWait = "wait"
)

// Restart is the restart policy of a spec.
type Restart struct {
	// Policy is never, on-failure or always.
	Policy string `json:"policy"`
	// MaxRestarts automatic restarts within Window are allowed; one more
	// ends the agent failed with reason "restart limit reached".
	MaxRestarts int         `json:"max_restarts"`
	Window      string      `json:"window"`
	Backoff     BackoffSpec `json:"backoff"`
	// ResetAfter is the uptime after which a run counts as stable: the
	// next restart is immediate again and the backoff starts over.
	ResetAfter string `json:"reset_after"`
}

// BackoffSpec is the delay before the second and later consecutive restarts:
// Initial, doubling up to Max, with jitter. The first restart is immediate.
type BackoffSpec struct {
	Initial string `json:"initial"`
	Max     string `json:"max"`
}

// Restart policies.
const (
	Never     = "never"
	OnFailure = "on-failure"
	Always    = "always"
)

// Kinds of agent.
const (
	KindProcess = "process"
	KindLLM     = "llm"
)

// SpecDefaults are the defaults that come from configuration.
type SpecDefaults struct {
	StopTimeout time.Duration
	// Model, MaxSteps and Timeout are the defaults of llm agents.
	Model    string
	MaxSteps int
	Timeout  time.Duration
	// Sandbox is the default sandbox of process agents; ExecSandbox that
	// of an llm agent's exec-tool programs.
	Sandbox     SandboxSpec
	ExecSandbox SandboxSpec
	// Policy is the configured policy of llm agents' tools, which only an
	// admin may widen in a spec.
	Policy Policy
}

// SandboxDefaults returns the configured sandbox of an agent of kind.
func (d SpecDefaults) SandboxDefaults(kind string) SandboxSpec {
	if kind == KindLLM {
		return d.ExecSandbox
	}
	return d.Sandbox
}
