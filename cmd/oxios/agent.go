package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Spawn, list, wait for, kill and restart agents",
		Long: `An agent is one supervised unit of work with an id. Process agents are OS
processes: each runs in its own process group with its own workspace, its
output goes to a rotated log, and a restart policy brings it back with
exponential backoff when it exits.`,
		Example: `  oxios agent spawn --name web --restart always -- python3 agent.py
  oxios agent list --state running
  oxios agent logs -f 0193e2a4-...
  oxios agent wait 0193e2a4-... --timeout 5m
  oxios agent kill 0193e2a4-...`,
		Args: noArgs,
	}
	cmd.AddCommand(a.agentSpawnCmd(), a.agentListCmd(), a.agentGetCmd(), a.agentWaitCmd(),
		a.agentKillCmd(), a.agentRestartCmd(), a.agentLogsCmd(), a.agentOutputCmd(), a.agentRmCmd())
	return cmd
}

func (a *app) agentOutputCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "output ID",
		Short: "Print the whole output of an llm agent",
		Long: `Output prints an llm agent's whole final answer (or, while it runs, its latest
text). Its record (agent get) holds only the first 64 KiB of it.`,
		Example: "  oxios agent output 0193e2a4-...\n  oxios agent output 0193e2a4-... > answer.md",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := a.printOutput(c, args[0]); err != nil {
				return apiError(err)
			}
			return nil
		},
	}
}

func (a *app) agentListCmd() *cobra.Command {
	var f client.AgentFilter
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agents, newest first",
		Example: `  oxios agent list
  oxios agent list --state running,backoff --label team=search
  oxios agent list --node n2             # the agents of one node of the cluster
  oxios agent list -o json --limit 1000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var items []oxios.Record
			for {
				page, next, err := c.Agents(context.Background(), f)
				if err != nil {
					return apiError(err)
				}
				items = append(items, page...)
				if !all || next == "" {
					break
				}
				f.Cursor = next
			}
			if items == nil {
				items = []oxios.Record{}
			}
			if a.output == "json" {
				return printJSON(a.stdout, items)
			}
			if len(items) == 0 {
				fmt.Fprintln(a.stderr, "no agents")
				return nil
			}
			col := newColors(a.stdout)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATE\tNODE\tPID\tRESTARTS\tAGE\tREASON")
			for _, r := range items {
				pid := "-"
				if r.PID > 0 {
					pid = strconv.Itoa(r.PID)
				}
				reason := r.Reason
				if r.QueueReason != "" {
					reason = r.QueueReason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Name, paintState(col, r.State), r.Node, pid, r.Restarts, age(r.CreatedAt), reason)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.States, "state", nil, "only these states (comma-separated): queued, starting, running, backoff, succeeded, failed, killed")
	fl.StringVar(&f.Kind, "kind", "", "only this kind: process or llm")
	fl.StringVar(&f.Name, "name", "", "only agents with this name")
	fl.StringVar(&f.Node, "node", "", "only agents on this node (see oxios node list)")
	fl.StringArrayVarP(&f.Labels, "label", "l", nil, "only agents with label KEY=VALUE (repeatable)")
	fl.IntVar(&f.Limit, "limit", 100, "at most this many agents (1 to 1000)")
	fl.BoolVar(&all, "all", false, "every agent, page after page")
	return cmd
}

func (a *app) agentGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show an agent's record",
		Example: "  oxios agent get 0193e2a4-...\n  oxios agent get 0193e2a4-... -o json",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Agent(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			a.printRecord(r)
			return nil
		},
	}
}

func (a *app) agentWaitCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for an agent to end",
		Long: `Wait blocks until the agent ends and prints its record. Exit status:
0 the agent succeeded, 1 it failed, 3 it was killed, 124 --timeout passed first.`,
		Example: "  oxios agent wait 0193e2a4-...\n  oxios agent wait 0193e2a4-... --timeout 5m -o json",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usageError("--timeout: must not be negative (got %s)", timeout)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.waitFor(c, args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	return cmd
}

// waitFor waits for agent id to end (timeout 0: for ever) and exits by
// its outcome: 0 succeeded, 1 failed, 3 killed, 124 timed out.
func (a *app) waitFor(c *client.Client, id string, timeout time.Duration) error {
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx := interrupted
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	sp := newSpinner(a.stderr, "waiting for "+id)
	start := time.Now()
	var r oxios.Record
	for {
		step := 2 * time.Second
		if !sp.on {
			step = 5 * time.Minute // no progress to draw: fewer, longer calls
		}
		if dl, ok := ctx.Deadline(); ok {
			step = min(step, max(time.Until(dl), time.Millisecond))
		}
		var err error
		called := time.Now()
		r, err = c.Wait(ctx, id, step)
		if err == nil && !r.State.Terminal() && time.Since(called) < step/2 {
			// The daemon answered early without an end (it is shutting
			// down, say): do not ask again at once.
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		if err != nil {
			sp.done()
			if ctx.Err() != nil {
				break
			}
			return apiError(err)
		}
		sp.tick(time.Since(start))
		if r.State.Terminal() || ctx.Err() != nil {
			break
		}
	}
	sp.done()
	if interrupted.Err() != nil {
		// Waiting ends, the agent does not: say so, and how to stop it.
		fmt.Fprintf(a.stderr, "stopped waiting; agent %s keeps running (oxios agent kill %s stops it)\n", id, id)
		return &exitError{code: exitInterrupted}
	}
	if !r.State.Terminal() {
		if r.ID == "" {
			r, _ = c.Agent(context.Background(), id)
		}
		if a.output == "json" {
			printJSON(a.stdout, r)
		}
		return &exitError{code: exitTimeout, err: fmt.Errorf("agent %s is still %s after %s", id, r.State, time.Since(start).Round(time.Millisecond))}
	}
	if a.output == "json" {
		printJSON(a.stdout, r)
	} else {
		fmt.Fprintf(a.stdout, "%s %s", id, paintState(newColors(a.stdout), r.State))
		if r.Reason != "" {
			fmt.Fprintf(a.stdout, " (%s)", r.Reason)
		}
		fmt.Fprintln(a.stdout)
	}
	switch r.State {
	case oxios.Succeeded:
		return nil
	case oxios.Killed:
		return &exitError{code: exitKilled}
	default:
		return &exitError{code: exitFailure}
	}
}

func (a *app) agentKillCmd() *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "kill ID...",
		Short: "Stop agents (a queued agent is cancelled)",
		Long: `Kill sends the agent's stop signal (SIGTERM unless its spec says otherwise)
to its whole process group, then SIGKILL after the grace period, and waits
until it has ended. A killed agent ends 'killed' and is not restarted.`,
		Example: "  oxios agent kill 0193e2a4-...\n  oxios agent kill --grace 0s 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("grace") && grace < 0 {
				return usageError("--grace: must not be negative (got %s)", grace)
			}
			if !cmd.Flags().Changed("grace") {
				grace = -1
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				r, err := c.Kill(context.Background(), id, grace)
				if err != nil {
					return err
				}
				return a.report(r, "%s %s\n", id, r.State)
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "time between the stop signal and SIGKILL (default: the agent's stop_timeout)")
	return cmd
}

// agentIDs requires at least one agent ID.
func agentIDs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageError("%s needs at least one agent ID", cmd.CommandPath())
	}
	return nil
}

// each runs fn for every id, reports every failure, and fails if any did.
func (a *app) each(ids []string, fn func(id string) error) error {
	var last error
	for _, id := range ids {
		if err := fn(id); err != nil {
			last = apiError(err)
			if len(ids) > 1 {
				fmt.Fprintf(a.stderr, "oxios: %s: %v\n", id, err)
			}
		}
	}
	if last != nil && len(ids) > 1 {
		var ee *exitError
		if e, ok := last.(*exitError); ok {
			ee = e
		}
		return &exitError{code: ee.code}
	}
	return last
}

// report prints a record as JSON, or the formatted line for people.
func (a *app) report(r oxios.Record, format string, args ...any) error {
	if a.output == "json" {
		return printJSON(a.stdout, r)
	}
	fmt.Fprintf(a.stdout, format, args...)
	return nil
}

func (a *app) agentRestartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restart ID...",
		Short: "Restart agents",
		Long: `A running agent is stopped and started again at once; an ended one starts
a new run through the scheduler. Manual restarts are not counted in
'restarts' and reset the backoff.`,
		Example: "  oxios agent restart 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				r, err := c.Restart(context.Background(), id)
				if err != nil {
					return err
				}
				return a.report(r, "%s restarting\n", id)
			})
		},
	}
}

func (a *app) agentRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID...",
		Short:   "Delete ended agents with their logs and own workspaces",
		Example: "  oxios agent rm 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				if err := c.DeleteAgent(context.Background(), id); err != nil {
					return err
				}
				if a.output != "json" {
					fmt.Fprintf(a.stdout, "%s deleted\n", id)
				}
				return nil
			})
		},
	}
}

func (a *app) agentLogsCmd() *cobra.Command {
	var (
		n      int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an agent's output (stdout and stderr)",
		Long: `Logs prints the last lines of the agent's log. With -f it keeps printing new
lines until the agent ends (or Ctrl-C).`,
		Example: "  oxios agent logs 0193e2a4-...\n  oxios agent logs -f -n 20 0193e2a4-...",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("--lines: must not be negative (got %d)", n)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if !follow {
				lines, err := c.AgentLogs(context.Background(), args[0], n)
				if err != nil {
					return apiError(err)
				}
				if a.output == "json" {
					return printJSON(a.stdout, lines)
				}
				for _, l := range lines {
					fmt.Fprintln(a.stdout, l)
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			err = c.FollowAgentLogs(ctx, args[0], n, func(l string) error {
				_, err := io.WriteString(a.stdout, l+"\n")
				return err
			})
			if err != nil && ctx.Err() == nil {
				return apiError(err)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 100, "how many of the last lines to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the agent ends")
	return cmd
}

func (a *app) schedulerCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "scheduler",
		Short:   "Show the scheduler's limits, running agents and queue",
		Example: "  oxios scheduler\n  oxios scheduler -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.Scheduler(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, s)
			}
			rate := "no limit"
			if s.Limits.SpawnsPerMinute > 0 {
				rate = fmt.Sprintf("%d per minute", s.Limits.SpawnsPerMinute)
			}
			rows := [][2]string{
				{"Running", fmt.Sprintf("%d of %d", s.Running, s.Limits.MaxRunning)},
				{"Running LLM", fmt.Sprintf("%d of %d", s.RunningLLM, s.Limits.MaxRunningLLM)},
				{"Spawn rate", rate},
				{"Queued", strconv.Itoa(s.QueuedTotal)},
			}
			for _, q := range s.Queued {
				if len(q.IDs) > 0 {
					rows = append(rows, [2]string{"  " + q.Priority, strings.Join(q.IDs, " ")})
				}
			}
			printFields(a.stdout, rows)
			return nil
		},
	}
}
