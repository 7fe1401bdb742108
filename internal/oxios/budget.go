package oxios

import "time"

// Limits are the most a budget allows in its window; 0 is no limit.
type Limits struct {
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
	Calls   int64   `json:"calls"`
}

// BudgetUsage is what was used: tokens in and out, cost (calls to models without
// a price count no cost) and model calls.
type BudgetUsage struct {
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
	Calls   int64   `json:"calls"`
}

// Add adds v to u.
func (u *BudgetUsage) Add(v BudgetUsage) {
	u.Tokens += v.Tokens
	u.CostUSD += v.CostUSD
	u.Calls += v.Calls
}

// Budget is one budget's definition.
type Budget struct {
	// Name is "global" or "label:KEY=VALUE".
	Name string `json:"name"`
	// Window is how far back usage counts: a duration such as "1h", or
	// days such as "30d".
	Window string `json:"window"`
	Limits
	// ResetAt: usage before it does not count.
	ResetAt   *time.Time `json:"reset_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// BudgetStatus is a budget with its usage now.
type BudgetStatus struct {
	Budget
	Used BudgetUsage `json:"used"`
	// Exhausted is set when a limit is reached: no agent under the budget
	// starts or makes another model call until usage leaves the window.
	Exhausted bool `json:"exhausted"`
	// FreesAt is when enough usage has left the window for an exhausted
	// budget to allow calls again.
	FreesAt *time.Time `json:"frees_at,omitempty"`
}
