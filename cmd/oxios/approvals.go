package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) approvalsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, approve and reject tool calls waiting for a human",
		Long: `A tool call in the policy's ask list (config [policy] ask, or a spec's
policy) waits for a decision; its agent is waiting_approval meanwhile.
Approved, the call runs; rejected, the model is told why. Approvals are
kept across daemon restarts.`,
		Example: `  oxios approvals list
  oxios approvals approve 3f2a9c...
  oxios approvals reject 3f2a9c... --reason "not on prod"`,
		Args: noArgs,
	}
	cmd.AddCommand(a.approvalsListCmd(), a.decideCmd(true), a.decideCmd(false))
	return cmd
}

func (a *app) approvalsListCmd() *cobra.Command {
	var all bool
	var agent string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List pending approvals (--all: decided ones too)",
		Example: "  oxios approvals list\n  oxios approvals list --all -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			state := "pending"
			if all {
				state = ""
			}
			items, err := c.Approvals(context.Background(), state, agent)
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, items)
			}
			if len(items) == 0 {
				fmt.Fprintln(a.stderr, "no approvals")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tAGENT\tTOOL\tARGS\tASKED")
			for _, ap := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ap.ID, ap.State, ap.AgentID, ap.Tool, truncateArgs(ap.Args), ap.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "decided approvals too")
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent's")
	return cmd
}

func (a *app) decideCmd(approve bool) *cobra.Command {
	var reason string
	use, short := "reject ID", "Reject a pending tool call; the model is told why"
	if approve {
		use, short = "approve ID", "Approve a pending tool call; it runs and the agent goes on"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  oxios approvals " + use[:len(use)-3] + " 3f2a9c... --reason \"checked\"",
		Args:    exactArgs(1, "an approval ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ap, err := c.Decide(context.Background(), args[0], approve, reason)
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, ap)
			}
			fmt.Fprintf(a.stdout, "%s %s (%s for agent %s)\n", ap.ID, ap.State, ap.Tool, ap.AgentID)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (the model sees it for a rejection)")
	return cmd
}
