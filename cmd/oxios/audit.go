package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List and verify the tamper-evident audit trail",
		Long: `Security-relevant actions (failed authentication, agent spawns, kills,
restarts and deletes, policy denials, state deletes) are appended to a
chain in which each entry carries an HMAC-SHA256 over its content and the
previous entry's MAC, under the key in $OXIOS_HOME/secrets/audit.key.`,
		Example: `  oxios audit list --action 'agent.*' --since 24h
  oxios audit verify`,
		Args: noArgs,
	}
	cmd.AddCommand(a.auditListCmd(), a.auditVerifyCmd())
	return cmd
}

func (a *app) auditListCmd() *cobra.Command {
	var f client.AuditFilter
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit entries, oldest first",
		Example: `  oxios audit list
  oxios audit list --actor admin --action agent.kill
  oxios audit list --since 2026-11-25T00:00:00Z -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var items []oxios.AuditEntry
			for {
				page, next, err := c.Audit(context.Background(), f)
				if err != nil {
					return apiError(err)
				}
				items = append(items, page...)
				if !all || next == 0 {
					break
				}
				f.After = next
			}
			if items == nil {
				items = []oxios.AuditEntry{}
			}
			if a.output == "json" {
				return printJSON(a.stdout, items)
			}
			if len(items) == 0 {
				fmt.Fprintln(a.stderr, "no audit entries")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tNODE\tACTOR\tACTION\tRESOURCE\tOUTCOME")
			for _, e := range items {
				node := e.Node
				if node == "" {
					node = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format(time.DateTime), node, e.Actor, e.Action, e.Resource, e.Outcome)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Actor, "actor", "", "only entries by this actor")
	fl.StringVar(&f.Action, "action", "", "only this action, or a prefix with * (agent.*)")
	fl.StringVar(&f.Since, "since", "", "only entries since an RFC 3339 time or a duration back (24h)")
	fl.IntVar(&f.Limit, "limit", 100, "at most this many entries (1 to 1000)")
	fl.BoolVar(&all, "all", false, "every matching entry, page after page")
	return cmd
}

func (a *app) auditVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the whole chain; exit 1 naming the first broken entry",
		Example: `  oxios audit verify
  oxios audit verify -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := c.AuditVerify(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				printJSON(a.stdout, v)
			} else if v.OK {
				fmt.Fprintf(a.stdout, "audit trail intact: %d entries verified, up to its signed head (%d)\n", v.Entries, v.Head)
			} else {
				for _, d := range v.Damage {
					fmt.Fprintln(a.stdout, d)
				}
			}
			if !v.OK {
				missing := ""
				if v.Missing > 0 {
					missing = fmt.Sprintf(" (%d entries missing in all)", v.Missing)
				}
				return failure(fmt.Errorf("audit trail broken at entry %d: %s%s", v.FirstBroken, v.Reason, missing))
			}
			return nil
		},
	}
}
