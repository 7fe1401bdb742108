package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/tools"
)

// The spec vocabulary, defined in package oxios.
type (
	Spec         = oxios.Spec
	SpecBudget   = oxios.SpecBudget
	Restart      = oxios.Restart
	BackoffSpec  = oxios.BackoffSpec
	SpecDefaults = oxios.SpecDefaults
)

// Ways an agent meets an exhausted budget at admission.
const (
	BudgetFail = oxios.BudgetFail
	BudgetWait = oxios.BudgetWait
)

// Restart policies.
const (
	Never     = oxios.Never
	OnFailure = oxios.OnFailure
	Always    = oxios.Always
)

// Kinds of agent.
const (
	KindProcess = oxios.KindProcess
	KindLLM     = oxios.KindLLM
)

// InvalidError is a spec that cannot run; Field names the offending field.
type InvalidError = oxios.InvalidError

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

var (
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envKeyRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKeyRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
)

// reservedEnv are set by oxios for every agent.
var reservedEnv = []string{"OXIOS_AGENT_ID", "OXIOS_URL", "OXIOS_NODE"}

var signals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGHUP": syscall.SIGHUP,
	"SIGQUIT": syscall.SIGQUIT, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGKILL": syscall.SIGKILL,
}

// Normalize validates s and fills its defaults. Errors are *InvalidError.
func Normalize(s *Spec, d SpecDefaults) error {
	_, err := normalize(s, d)
	return err
}

// normalizing is a spec being normalized, with what it gave of its
// sandbox (paths resolved) and dir before the defaults were merged in:
// what widening is judged on.
type normalizing struct {
	*Spec
	given    sandbox.Spec
	dirGiven bool
}

func normalize(spec *Spec, d SpecDefaults) (*normalizing, error) {
	s := &normalizing{Spec: spec}
	return s, s.normalize(d)
}

func (s *normalizing) normalize(d SpecDefaults) error {
	switch s.Kind {
	case "", KindProcess:
		s.Kind = KindProcess
		if err := s.normalizeProcess(); err != nil {
			return err
		}
	case KindLLM:
		if err := s.normalizeLLM(d); err != nil {
			return err
		}
	default:
		return invalid("kind", "must be process or llm (got %q)", s.Kind)
	}
	return s.normalizeCommon(d)
}

func (s *normalizing) normalizeLLM(d SpecDefaults) error {
	if strings.TrimSpace(s.Goal) == "" {
		return invalid("goal", "must not be empty for an llm agent")
	}
	if len(s.Goal) > 100<<10 || len(s.System) > 100<<10 {
		return invalid("goal", "goal and system must each be at most 100 KiB")
	}
	if s.Command != "" || len(s.Args) > 0 {
		return invalid("command", "is for process agents; an llm agent has a goal")
	}
	if s.Model == "" {
		s.Model = d.Model
	}
	if s.MaxSteps < 0 || s.MaxSteps > 10000 {
		return invalid("max_steps", "must be from 1 to 10000 (got %d)", s.MaxSteps)
	}
	if s.MaxSteps == 0 {
		s.MaxSteps = d.MaxSteps
	}
	if s.Timeout == "" && d.Timeout > 0 {
		s.Timeout = d.Timeout.String()
	}
	if s.Name == "" {
		s.Name = "llm"
	}
	if b := s.Budget; b != nil {
		switch {
		case b.Tokens < 0:
			return invalid("budget.tokens", "must be 0 (no limit) or more (got %d)", b.Tokens)
		case b.CostUSD < 0 || b.CostUSD != b.CostUSD:
			return invalid("budget.cost_usd", "must be 0 (no limit) or more (got %g)", b.CostUSD)
		case b.Calls < 0:
			return invalid("budget.calls", "must be 0 (no limit) or more (got %d)", b.Calls)
		}
		switch b.OnExhausted {
		case "":
			b.OnExhausted = BudgetFail
		case BudgetFail, BudgetWait:
		default:
			return invalid("budget.on_exhausted", "must be fail or wait (got %q)", b.OnExhausted)
		}
	}
	if s.Policy != nil {
		if err := tools.ValidatePolicy(*s.Policy, "policy."); err != nil {
			var inv *tools.InvalidError
			if errors.As(err, &inv) {
				return invalid(inv.Field, "%s", inv.Msg)
			}
			return err
		}
	}
	return nil
}

func (s *normalizing) normalizeProcess() error {
	if s.Goal != "" || s.Model != "" || s.System != "" || s.MaxSteps != 0 || s.Policy != nil || s.Budget != nil {
		return invalid("goal", "goal, model, system, max_steps, policy and budget are for llm agents (kind \"llm\")")
	}
	if strings.TrimSpace(s.Command) == "" {
		return invalid("command", "must not be empty")
	}
	if strings.ContainsRune(s.Command, 0) {
		return invalid("command", "must not contain NUL")
	}
	for i, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			return invalid(fmt.Sprintf("args[%d]", i), "must not contain NUL")
		}
	}
	if s.Name == "" {
		s.Name = defaultName(s.Command)
	}
	return nil
}

// normalizeCommon checks and fills the fields of every kind.
func (s *normalizing) normalizeCommon(d SpecDefaults) error {
	if !nameRe.MatchString(s.Name) {
		return invalid("name", "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (got %q)", s.Name)
	}
	if err := s.checkEnv(); err != nil {
		return err
	}
	return s.normalizeRest(d)
}

// checkEnv checks env and secret_env.
func (s *normalizing) checkEnv() error {
	for k, v := range s.Env {
		if !envKeyRe.MatchString(k) {
			return invalid("env."+k, "is not a valid variable name (letters, digits and '_', not starting with a digit)")
		}
		if strings.ContainsRune(v, 0) {
			return invalid("env."+k, "must not contain NUL")
		}
		for _, r := range reservedEnv {
			if k == r {
				return invalid("env."+k, "is set by oxios and cannot be given")
			}
		}
	}
	seen := map[string]bool{}
	for i, k := range s.SecretEnv {
		field := fmt.Sprintf("secret_env[%d]", i)
		if !envKeyRe.MatchString(k) {
			return invalid(field, "is not a valid variable name (got %q)", k)
		}
		if _, dup := s.Env[k]; dup || seen[k] || slices.Contains(reservedEnv, k) {
			return invalid(field, "%s is given twice or is set by oxios", k)
		}
		seen[k] = true
	}
	return nil
}

// normalizeRest is normalizeCommon from the sandbox on.
func (s *normalizing) normalizeRest(d SpecDefaults) error {
	sb := d.SandboxDefaults(s.Kind)
	if s.Sandbox != nil {
		// Validate resolves paths in place: not in a spec shared with
		// another record (a parent's, for its sub-agent).
		own := *s.Sandbox
		own.Read, own.Write = slices.Clone(own.Read), slices.Clone(own.Write)
		s.Sandbox = &own
		if err := sandbox.Validate(s.Sandbox, "sandbox."); err != nil {
			var inv *sandbox.InvalidError
			if errors.As(err, &inv) {
				return invalid(inv.Field, "%s", inv.Msg)
			}
			return err
		}
		s.given = *s.Sandbox
		sb = sb.Merge(*s.Sandbox)
	}
	if sb.Mode == "" {
		sb.Mode = sandbox.Enforce
	}
	if sb.Network == "" {
		sb.Network = sandbox.NetAny
		if s.Kind == KindLLM {
			sb.Network = sandbox.NetNone
		}
	}
	s.Sandbox = &sb
	if s.Dir != "" {
		if !filepath.IsAbs(s.Dir) {
			return invalid("dir", "must be an absolute path (got %q)", s.Dir)
		}
		if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
			return invalid("dir", "%s is not an existing directory", s.Dir)
		}
		// Resolved once: the sandbox is judged and applied on what it names.
		s.Dir, s.dirGiven = sandbox.Resolve(s.Dir), true
	}
	p, err := scheduler.ParsePriority(s.Priority)
	if err != nil {
		return invalid("priority", "%s", err.Error())
	}
	s.Priority = p.String()
	if err := checkLabels("labels", s.Labels); err != nil {
		return err
	}
	if err := normalizeRestart(&s.Restart); err != nil {
		return err
	}
	if err := normalizePlacement(s.Placement); err != nil {
		return err
	}
	sig := strings.ToUpper(s.StopSignal)
	if sig == "" {
		sig = "SIGTERM"
	}
	if !strings.HasPrefix(sig, "SIG") {
		sig = "SIG" + sig
	}
	if _, ok := signals[sig]; !ok {
		return invalid("stop_signal", "must be one of SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGKILL (got %q)", s.StopSignal)
	}
	s.StopSignal = sig
	if s.StopTimeout, err = duration("stop_timeout", s.StopTimeout, d.StopTimeout, 0, time.Hour); err != nil {
		return err
	}
	if s.Timeout, err = duration("timeout", s.Timeout, 0, 0, 365*24*time.Hour); err != nil {
		return err
	}
	return nil
}

func normalizeRestart(r *Restart) error {
	switch r.Policy {
	case "":
		r.Policy = Never
	case Never, OnFailure, Always:
	default:
		return invalid("restart.policy", "must be never, on-failure or always (got %q)", r.Policy)
	}
	if r.MaxRestarts < 0 || r.MaxRestarts > 1000000 {
		return invalid("restart.max_restarts", "must be from 1 to 1000000, or 0 for the default of 5 (got %d)", r.MaxRestarts)
	}
	if r.MaxRestarts == 0 {
		r.MaxRestarts = 5
	}
	var err error
	if r.Window, err = duration("restart.window", r.Window, time.Minute, time.Millisecond, 7*24*time.Hour); err != nil {
		return err
	}
	if r.ResetAfter, err = duration("restart.reset_after", r.ResetAfter, 30*time.Second, time.Millisecond, 24*time.Hour); err != nil {
		return err
	}
	if r.Backoff.Initial, err = duration("restart.backoff.initial", r.Backoff.Initial, 100*time.Millisecond, time.Millisecond, time.Hour); err != nil {
		return err
	}
	if r.Backoff.Max, err = duration("restart.backoff.max", r.Backoff.Max, 30*time.Second, time.Millisecond, 24*time.Hour); err != nil {
		return err
	}
	if dur(r.Backoff.Max) < dur(r.Backoff.Initial) {
		return invalid("restart.backoff.max", "must not be less than restart.backoff.initial (%s < %s)", r.Backoff.Max, r.Backoff.Initial)
	}
	return nil
}

// duration parses a duration field, applies its default when empty, checks
// its range and returns it in canonical form.
func duration(field, v string, def, min, max time.Duration) (string, error) {
	if v == "" {
		return def.String(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return "", invalid(field, "must be a duration such as \"10s\" or \"1m30s\" (got %q)", v)
	}
	if d < min || d > max {
		if d < 0 {
			return "", invalid(field, "must not be negative (got %s)", v)
		}
		return "", invalid(field, "must be from %s to %s (got %s)", min, max, v)
	}
	return d.String(), nil
}

// dur reads a duration that Normalize has already checked.
func dur(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

func defaultName(command string) string {
	base := filepath.Base(strings.TrimSpace(command))
	var b strings.Builder
	for _, r := range base {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	name := strings.TrimLeft(b.String(), "._-")
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		name = "agent"
	}
	return name
}

// widening lists the fields of a normalized spec that widen its sandbox
// beyond the configured defaults, an admin's decision: a weaker mode, a
// wider network, higher limits, a read or write path the defaults do not
// cover, and a dir (which the agent may write) outside the default write
// paths.
func (s *Supervisor) widening(spec *normalizing) []string {
	d := s.o.Defaults.SandboxDefaults(spec.Kind)
	var out []string
	if spec.dirGiven && !covered(spec.Dir, d.Write) {
		out = append(out, "dir")
	}
	if len(spec.SecretEnv) > 0 {
		out = append(out, "secret_env") // whoever reads the agent's log would read the secret
	}
	for _, f := range sandbox.Widening(d, spec.given) {
		out = append(out, "sandbox."+f)
	}
	if spec.Policy != nil {
		out = append(out, tools.Widening(s.o.Defaults.Policy, *spec.Policy)...)
	}
	return out
}

func covered(p string, dirs []string) bool {
	for _, d := range dirs {
		if sandbox.Within(p, sandbox.Resolve(d)) {
			return true
		}
	}
	return false
}

// normalizePlacement checks the form of a placement; whether a node
// matches it is decided at spawn (place.go).
func normalizePlacement(p *oxios.Placement) error {
	if p == nil {
		return nil
	}
	if p.Node != "" && !nameRe.MatchString(p.Node) {
		return invalid("placement.node", "must be a node name: 1 to 64 letters, digits, '.', '_' or '-' (got %q)", p.Node)
	}
	if err := checkLabels("placement.labels", p.Labels); err != nil {
		return err
	}
	if p.Spread != "" && !labelKeyRe.MatchString(p.Spread) {
		return invalid("placement.spread", "must be a node label key: 1 to 63 letters, digits, '.', '_', '/' or '-' (got %q)", p.Spread)
	}
	return nil
}

// checkLabels checks labels, given as field: at most 32, keys of the
// label alphabet, values of at most 256 bytes without NUL.
func checkLabels(field string, labels map[string]string) error {
	if len(labels) > 32 {
		return invalid(field, "at most 32 labels (got %d)", len(labels))
	}
	for k, v := range labels {
		if !labelKeyRe.MatchString(k) {
			return invalid(field+"."+k, "a label key is 1 to 63 letters, digits, '.', '_', '/' or '-', starting with a letter or digit")
		}
		if len(v) > 256 || strings.ContainsRune(v, 0) {
			return invalid(field+"."+k, "a label value is at most 256 bytes, without NUL")
		}
	}
	return nil
}
