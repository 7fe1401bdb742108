package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) budgetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Limit the tokens, cost and model calls of llm agents",
		Long: `A budget limits what language-model agents use over a sliding window:
tokens (in + out), cost in USD and model calls. "global" applies to every
llm agent; "label:KEY=VALUE" to the agents with that label. An agent under
an exhausted budget does not start (it fails "budget exhausted", or waits
queued when its spec has budget.on_exhausted = "wait"); a running agent is
stopped before its next model call ("budget exceeded"), keeping its output.
Events budget.warning (80 %) and budget.exceeded mark the crossings. A
spec's own budget (tokens, cost_usd, calls) caps one run of that agent.`,
		Example: `  oxios budget set global --tokens 2000000 --cost 20 --window 24h
  oxios budget set label:team=research --cost 5 --window 7d
  oxios budget list
  oxios budget reset global`,
		Args: noArgs,
	}
	cmd.AddCommand(a.budgetSetCmd(), a.budgetGetCmd(), a.budgetListCmd(), a.budgetResetCmd(), a.budgetRmCmd())
	return cmd
}

func (a *app) budgetSetCmd() *cobra.Command {
	var tokens, calls int64
	var cost float64
	var window string
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Create a budget, or change the limits given (0 removes a limit)",
		Long: `Set creates a budget or changes an existing one; limits not given keep
their value, and 0 removes a limit. The window is a duration ("90m",
"24h") or days ("7d"), 24h when new. Usage so far is kept (see reset).`,
		Example: `  oxios budget set global --tokens 2000000 --window 24h
  oxios budget set label:team=research --cost 5 --calls 1000 --window 7d
  oxios budget set global --calls 0`,
		Args: exactArgs(1, `a budget name ("global" or "label:KEY=VALUE")`),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := budget.ValidName(args[0]); err != nil {
				return usageError("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := context.Background()
			cur, err := c.Budget(ctx, args[0])
			var ce *client.Error
			if err != nil && !(errors.As(err, &ce) && ce.Status == 404) {
				return apiError(err)
			}
			f := cmd.Flags()
			if math.IsNaN(cost) || math.IsInf(cost, 0) {
				return usageError("--cost: must be an amount of USD, 0 (no limit) or more (got %v)", cost)
			}
			if f.Changed("tokens") {
				cur.Tokens = tokens
			}
			if f.Changed("cost") {
				cur.CostUSD = cost
			}
			if f.Changed("calls") {
				cur.Calls = calls
			}
			if f.Changed("window") {
				cur.Window = window
			}
			st, err := c.SetBudget(ctx, args[0], cur.Window, cur.Limits)
			if err != nil {
				return apiError(err)
			}
			return a.printBudget(st)
		},
	}
	cmd.Flags().Int64Var(&tokens, "tokens", 0, "most tokens (in + out) per window")
	cmd.Flags().Float64Var(&cost, "cost", 0, "most cost in USD per window")
	cmd.Flags().Int64Var(&calls, "calls", 0, "most model calls per window")
	cmd.Flags().StringVar(&window, "window", "", `sliding window such as "1h", "24h" or "7d" (new budgets: 24h)`)
	return cmd
}

func (a *app) budgetGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a budget's limits and usage",
		Example: "  oxios budget get global\n  oxios budget get label:team=research -o json",
		Args:    exactArgs(1, "a budget name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.Budget(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			return a.printBudget(st)
		},
	}
}

func (a *app) budgetListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List budgets with their usage",
		Example: "  oxios budget list\n  oxios budget list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			items, err := c.Budgets(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, items)
			}
			if len(items) == 0 {
				fmt.Fprintln(a.stderr, "no budgets; create one with: oxios budget set global --tokens 1000000")
				return nil
			}
			col := newColors(a.stdout)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tWINDOW\tTOKENS\tCOST\tCALLS\tSTATUS")
			for _, st := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, st.Window,
					usedOf(float64(st.Used.Tokens), float64(st.Tokens), false),
					usedOf(st.Used.CostUSD, st.CostUSD, true),
					usedOf(float64(st.Used.Calls), float64(st.Calls), false), budgetState(col, st))
			}
			return tw.Flush()
		},
	}
}

func (a *app) budgetResetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "reset NAME",
		Short:   "Forget a budget's usage so far (agents waiting on it start)",
		Example: "  oxios budget reset global",
		Args:    exactArgs(1, "a budget name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.ResetBudget(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			return a.printBudget(st)
		},
	}
}

func (a *app) budgetRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Short:   "Delete a budget and its usage",
		Example: "  oxios budget rm label:team=research",
		Args:    exactArgs(1, "a budget name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteBudget(context.Background(), args[0]); err != nil {
				return apiError(err)
			}
			if a.output != "json" {
				fmt.Fprintf(a.stdout, "budget %s deleted\n", args[0])
			}
			return nil
		},
	}
}

func (a *app) printBudget(st oxios.BudgetStatus) error {
	if a.output == "json" {
		return printJSON(a.stdout, st)
	}
	col := newColors(a.stdout)
	rows := [][2]string{
		{"Name", st.Name},
		{"Window", st.Window},
		{"Tokens", usedOf(float64(st.Used.Tokens), float64(st.Tokens), false)},
		{"Cost", usedOf(st.Used.CostUSD, st.CostUSD, true)},
		{"Calls", usedOf(float64(st.Used.Calls), float64(st.Calls), false)},
		{"Status", budgetState(col, st)},
	}
	if st.ResetAt != nil {
		rows = append(rows, [2]string{"Reset", st.ResetAt.Local().Format(time.DateTime)})
	}
	printFields(a.stdout, rows)
	return nil
}

// usedOf shows "used / limit (pct)", or the use alone without a limit.
func usedOf(used, limit float64, usd bool) string {
	f := func(v float64) string {
		if usd {
			return "$" + strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	if limit <= 0 {
		return f(used) + " (no limit)"
	}
	return fmt.Sprintf("%s / %s (%.0f%%)", f(used), f(limit), 100*used/limit)
}

func budgetState(col colors, st oxios.BudgetStatus) string {
	if !st.Exhausted {
		return col.green("ok")
	}
	s := "exhausted"
	if st.FreesAt != nil {
		s += " until " + st.FreesAt.Local().Format(time.DateTime)
	}
	return col.red(s)
}
