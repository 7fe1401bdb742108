package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/doctor"
)

func (a *app) doctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the installation and say how to fix what is wrong",
		Long: `Doctor checks the config file, the permissions of the home and its
secrets (0700 and 0600), the daemon's state, the listen address, the
storage (readiness and free disk) and whether the model providers have API
keys (without calling them). Each problem says how to fix it.

Exit codes: 0 nothing needs fixing (warnings may be shown), 1 something
needs fixing.`,
		Example: "  oxios doctor\n  oxios doctor -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := a.doctor()
			if a.output == "json" {
				if err := printJSON(a.stdout, fs); err != nil {
					return err
				}
			} else {
				col := newColors(a.stdout)
				for _, f := range fs {
					mark := col.green("✓")
					switch f.Status {
					case "warn":
						mark = col.yellow("!")
					case "fail":
						mark = col.red("✗")
					}
					fmt.Fprintf(a.stdout, "%s %-10s %s\n", mark, f.Check, f.Detail)
					if f.Fix != "" {
						fmt.Fprintf(a.stdout, "  %-10s fix: %s\n", "", f.Fix)
					}
				}
			}
			if check, failed := doctor.Failed(fs); failed {
				return failure(fmt.Errorf("%s needs fixing (see above)", check))
			}
			return nil
		},
	}
}

// doctor runs the checks on this home and its config.
func (a *app) doctor() []doctor.Finding {
	h, err := a.home()
	if err != nil {
		return []doctor.Finding{{Check: "home", Status: "fail", Detail: err.Error(), Fix: "set OXIOS_HOME to a directory you own"}}
	}
	cfg, path, cerr := a.loadConfig(h)
	if cerr != nil {
		cfg = config.DefaultConfig()
	}
	return doctor.Run(doctor.Options{Home: h, Config: cfg, ConfigPath: path, ConfigErr: cerr,
		Client: func(auth bool) (*client.Client, error) {
			if auth {
				return a.clientFor(h, cfg)
			}
			return client.New(a.daemonURL(h, cfg), ""), nil // probes need no token
		}})
}
