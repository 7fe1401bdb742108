// Package budget limits what language-model agents use — tokens, cost in
// USD and model calls — over sliding time windows, for every agent
// ("global") or for the agents that carry a label ("label:team=research").
// Definitions and usage live in the budgets bucket; each node writes its
// own usage under a key of its own, and every node sums all of them, so
// nodes never contend for one key.
package budget

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oxios/oxios/internal/oxios"
)

// Bucket is the key/value bucket of budgets and their usage.
const Bucket = "budgets"

// Global is the name of the budget every language-model agent is under.
const Global = "global"

// The budget vocabulary, defined in package oxios.
type (
	Limits = oxios.Limits
	Usage  = oxios.BudgetUsage
	Budget = oxios.Budget
	Status = oxios.BudgetStatus
)

// FromAgent converts an agent's usage.
func FromAgent(u oxios.Usage) Usage {
	v := Usage{Tokens: u.TokensIn + u.TokensOut, Calls: u.LLMCalls}
	if u.CostUSD != nil {
		v.CostUSD = *u.CostUSD
	}
	return v
}

var labelRe = regexp.MustCompile(`^label:([A-Za-z0-9][A-Za-z0-9._/-]{0,62})=([^\x00]{0,256})$`)

// ValidName checks a budget name.
func ValidName(name string) error {
	if name == Global || (utf8.ValidString(name) && labelRe.MatchString(name)) {
		return nil
	}
	return invalid("name", `must be "global" or "label:KEY=VALUE" such as "label:team=research" (got %q)`, name)
}

// ParseWindow reads a window: a Go duration ("90m", "24h") or whole days
// ("7d"), from 1s to 366d.
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 {
			return 0, invalid("window", `must be a duration such as "1h" or "24h", or days such as "7d" (got %q)`, s)
		}
		d = time.Duration(min(days, 1000)) * 24 * time.Hour
	} else {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, invalid("window", `must be a duration such as "1h" or "24h", or days such as "7d" (got %q)`, s)
		}
		d = v
	}
	if d < time.Second || d > 366*24*time.Hour {
		return 0, invalid("window", "must be from 1s to 366d (got %q)", s)
	}
	return d, nil
}

func invalid(field, format string, a ...any) error {
	return &oxios.InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks b and fills its default window (24h).
func Validate(b *Budget) error {
	if err := ValidName(b.Name); err != nil {
		return err
	}
	if b.Window == "" {
		b.Window = "24h"
	}
	if _, err := ParseWindow(b.Window); err != nil {
		return err
	}
	b.Window = strings.TrimSpace(b.Window)
	switch {
	case b.Tokens < 0:
		return invalid("tokens", "must be 0 (no limit) or more (got %d)", b.Tokens)
	case b.Calls < 0:
		return invalid("calls", "must be 0 (no limit) or more (got %d)", b.Calls)
	case b.CostUSD < 0 || math.IsNaN(b.CostUSD) || math.IsInf(b.CostUSD, 0):
		return invalid("cost_usd", "must be 0 (no limit) or a positive amount of USD (got %g)", b.CostUSD)
	case b.Tokens == 0 && b.Calls == 0 && b.CostUSD == 0:
		return invalid("tokens", "set at least one limit: tokens, cost_usd or calls")
	}
	return nil
}

// applies reports whether an agent with labels is under budget name.
func applies(name string, labels map[string]string) bool {
	if name == Global {
		return true
	}
	m := labelRe.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	v, ok := labels[m[1]]
	return ok && v == m[2]
}

// Error is a limit reached. It matches oxios.ErrBudget.
type Error struct {
	// Admission: the agent was not started; otherwise a model call was
	// refused mid-run.
	Admission bool
	// Budget is the budget's name, or "agent" for the spec's own limits.
	Budget  string
	Metric  string
	Used    float64
	Limit   float64
	Window  string
	FreesAt time.Time
}

func (e *Error) Error() string {
	what := "budget exceeded"
	if e.Admission {
		what = "budget exhausted"
	}
	used, limit := formatMetric(e.Metric, e.Used), formatMetric(e.Metric, e.Limit)
	if e.Budget == "agent" {
		return fmt.Sprintf("%s: the agent's own budget allows %s %s and it used %s", what, limit, e.Metric, used)
	}
	s := fmt.Sprintf("%s: %s allows %s %s per %s and %s were used", what, e.Budget, limit, e.Metric, e.Window, used)
	if !e.FreesAt.IsZero() {
		s += "; it frees at " + e.FreesAt.UTC().Format(time.RFC3339)
	}
	return s
}

// Is makes errors.Is(err, oxios.ErrBudget) true.
func (e *Error) Is(target error) bool { return target == oxios.ErrBudget }

func formatMetric(metric string, v float64) string {
	if metric == "cost_usd" {
		return "$" + strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatInt(int64(v), 10)
}

// metrics yields each limited metric with its use and limit.
// metric is one limited measure of a budget: its use against its limit.
type metric struct {
	name        string
	used, limit float64
}

func (m metric) reached() bool { return m.used >= m.limit }

func metrics(l Limits, u Usage) []metric {
	var out []metric
	if l.Tokens > 0 {
		out = append(out, metric{"tokens", float64(u.Tokens), float64(l.Tokens)})
	}
	if l.CostUSD > 0 {
		out = append(out, metric{"cost_usd", u.CostUSD, l.CostUSD})
	}
	if l.Calls > 0 {
		out = append(out, metric{"calls", float64(u.Calls), float64(l.Calls)})
	}
	return out
}

// SpecLimits are an agent spec's own limits.
func SpecLimits(s oxios.Spec) Limits {
	if s.Budget == nil {
		return Limits{}
	}
	return Limits{Tokens: s.Budget.Tokens, CostUSD: s.Budget.CostUSD, Calls: s.Budget.Calls}
}
