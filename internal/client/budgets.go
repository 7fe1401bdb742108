package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oxios/oxios/internal/oxios"
)

func budgetPath(name, rest string) string {
	return "/api/v1/budgets/" + url.PathEscape(name) + rest
}

// Budgets lists every budget with its usage.
func (c *Client) Budgets(ctx context.Context) ([]oxios.BudgetStatus, error) {
	var out struct {
		Items []oxios.BudgetStatus `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/budgets", nil, &out)
	return out.Items, err
}

// Budget returns one budget with its usage.
func (c *Client) Budget(ctx context.Context, name string) (oxios.BudgetStatus, error) {
	var out oxios.BudgetStatus
	err := c.do(ctx, http.MethodGet, budgetPath(name, ""), nil, &out)
	return out, err
}

// SetBudget creates or replaces a budget.
func (c *Client) SetBudget(ctx context.Context, name, window string, l oxios.Limits) (oxios.BudgetStatus, error) {
	var out oxios.BudgetStatus
	in := map[string]any{"window": window, "tokens": l.Tokens, "cost_usd": l.CostUSD, "calls": l.Calls}
	err := c.do(ctx, http.MethodPut, budgetPath(name, ""), in, &out)
	return out, err
}

// ResetBudget forgets a budget's usage so far.
func (c *Client) ResetBudget(ctx context.Context, name string) (oxios.BudgetStatus, error) {
	var out oxios.BudgetStatus
	err := c.do(ctx, http.MethodPost, budgetPath(name, "/reset"), nil, &out)
	return out, err
}

// DeleteBudget removes a budget.
func (c *Client) DeleteBudget(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, budgetPath(name, ""), nil, nil)
}
