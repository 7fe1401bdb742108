package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) reloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Apply the config file to the running daemon",
		Long: `Reload has the daemon read its config file again (like SIGHUP) and apply
at once what can change while it runs: scheduler limits, the default
policy of llm agents' tools, the log level and retention of ended agents.
It names the changed settings that take effect only after 'oxios restart'.
An invalid file is refused (exit 2, naming the key) and the running
configuration stays.`,
		Example: "  oxios config validate && oxios reload\n  oxios reload -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Refused here, as the daemon would: reload is one of the
			// commands an invalid file stops.
			h, err := a.home()
			if err != nil {
				return err
			}
			cfg, _, err := a.loadConfig(h)
			if err != nil {
				return err
			}
			c, err := a.clientFor(h, cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := c.Reload(ctx)
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, res)
			}
			switch {
			case len(res.Applied) == 0 && len(res.RestartNeeded) == 0:
				fmt.Fprintln(a.stdout, "reloaded: nothing changed")
			case len(res.Applied) > 0:
				fmt.Fprintln(a.stdout, "applied: "+strings.Join(res.Applied, ", "))
			}
			if len(res.RestartNeeded) > 0 {
				fmt.Fprintln(a.stdout, "needs a restart (oxios restart): "+strings.Join(res.RestartNeeded, ", "))
			}
			return nil
		},
	}
}
