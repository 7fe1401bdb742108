package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) eventsCmd() *cobra.Command {
	var (
		follow bool
		types  []string
		agent  string
		since  uint64
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show events from the event log, and follow new ones with -f",
		Long: `Print events, one line each: time, sequence, type, agent, data.

Without -f, prints the stored events after --since (default: all) and exits.
With -f, prints new events as they happen (after --since when given) until
interrupted; if the daemon restarts, it reconnects and resumes exactly
where it stopped. -o json prints one event envelope per line.

Type patterns: "agent.started", "agent.*" (or "agent"), "*.finished".`,
		Example: `  oxios events
  oxios events -f --type agent.*,tool.finished
  oxios events --agent 0193e2a4-... --since 1200 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := bus.Filter{Types: types, Agent: agent}
			if err := bus.ValidateFilter(f); err != nil {
				var inv *oxios.InvalidError
				if errors.As(err, &inv) {
					return usageError("--%s: %s", inv.Field, inv.Msg)
				}
				return usageError("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := client.EventsOptions{Types: types, Agent: agent, Follow: follow}
			if cmd.Flags().Changed("since") || !follow {
				o.Since = &since
			}
			colors := newColors(a.stdout)
			print := func(ev oxios.Event) error {
				if a.output == "json" {
					b, _ := json.Marshal(ev)
					_, err := fmt.Fprintf(a.stdout, "%s\n", b)
					return err
				}
				agentID := ev.AgentID
				if agentID == "" {
					agentID = "-"
				}
				seq := fmt.Sprintf("#%d", ev.Seq)
				if ev.Type == oxios.GapType {
					seq = "#-"
				}
				_, err := fmt.Fprintf(a.stdout, "%s  %s  %s  %s  %s\n", ev.Time.Local().Format("2006-01-02 15:04:05.000"), seq, colors.green(ev.Type), agentID, ev.Data)
				return err
			}
			for {
				last, err := c.Events(ctx, o, print)
				if ctx.Err() != nil || (err == nil && !follow) {
					return nil
				}
				if err != nil {
					var ce *client.Error
					if errors.As(err, &ce) {
						return apiError(err)
					}
					if !follow {
						return failure(err)
					}
				}
				// The stream broke (the daemon restarted): resume after the
				// last event seen.
				if last > 0 {
					o.Since = &last
				}
				fmt.Fprintln(a.stderr, "event stream interrupted; reconnecting…")
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	cmd.Flags().StringSliceVar(&types, "type", nil, "only events of these types (comma-separated patterns)")
	cmd.Flags().StringVar(&agent, "agent", "", "only events of this agent id")
	cmd.Flags().Uint64Var(&since, "since", 0, "start after this event sequence number")
	return cmd
}
