package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/kernel"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/security"
)

// app holds the global flags, the streams every command writes to, and
// the seams of the commands that send what their flags built.
type app struct {
	configPath string
	output     string
	stdout     io.Writer
	stderr     io.Writer
	seams
}

// seams replace what a command does once its flags are parsed, as
// cli/cli's runF does: a test of the flags and the printing sets one and
// needs no daemon. Nil is the real thing.
type seams struct {
	// spawnF spawns spec (agent spawn), waiting for its end with wait.
	spawnF func(spec oxios.Spec, wait bool) error
	// cronF creates the job j (cron add).
	cronF func(j client.CronJob) error
	// statePutF writes a document (state put) and returns its revision,
	// which the command then prints.
	statePutF func(ns, key string, value []byte, o client.PutOptions) (uint64, error)
}

// root is the oxios command, with a's streams and seams.
func (a *app) root() *cobra.Command {
	start := a.startCmd()
	root := &cobra.Command{
		Use:   "oxios",
		Short: "oxios is an operating system for AI agents",
		Long: `oxios supervises AI agents and agent processes, connects them with an event
bus, keeps their state, and shows everything through an API, a CLI and a
dashboard. Run without a command, it starts the daemon (same as 'oxios start').`,
		Example: `  oxios                 # start the daemon in the background
  oxios status          # is it running?
  oxios logs -f         # follow the daemon log
  oxios stop`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          start.RunE,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return usageError("--output: must be table or json (got %q)", a.output)
			}
			return nil
		},
	}
	root.Flags().AddFlagSet(start.Flags())
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "config file (default $OXIOS_HOME/config.toml)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v (see '%s --help')", err, c.CommandPath())
	})
	root.CompletionOptions.HiddenDefaultCmd = false
	root.AddCommand(start, a.stopCmd(), a.restartCmd(), a.statusCmd(), a.logsCmd(), a.versionCmd(), a.configCmd(), a.stateCmd(), a.eventsCmd(), a.agentCmd(), a.schedulerCmd(), a.runCmd(), a.auditCmd(), a.tokenCmd(), a.approvalsCmd(), a.budgetCmd(), a.cronCmd(), a.dashboardCmd(), a.reloadCmd(), a.doctorCmd(), a.serviceCmd(), a.backupCmd(), a.restoreCmd(), a.clusterCmd(), a.nodeCmd())
	for _, c := range root.Commands() {
		if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
			c.RunE = groupRun
		}
	}
	return root
}

// groupRun serves a command that only groups others: bare, it shows its
// help; with an unknown subcommand, it is a usage error.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return cmd.Help()
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageError("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
		return usageError("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
}

// home resolves $OXIOS_HOME.
func (a *app) home() (config.Home, error) {
	h, err := config.DefaultHome()
	if err != nil {
		return h, usageError("%v", err)
	}
	return h, nil
}

// loadConfig reads the config file (--config, or home/config.toml). A
// missing default file means the defaults; a missing --config file is an
// error. Every problem is a usage error naming the key.
func (a *app) loadConfig(h config.Home) (config.Config, string, error) {
	path := a.configPath
	explicit := path != ""
	if !explicit {
		path = h.ConfigPath()
	}
	cfg, err := config.Load(path, kernel.CheckConfig)
	if errors.Is(err, os.ErrNotExist) {
		if explicit {
			return cfg, path, usageError("--config: %s does not exist", path)
		}
		return config.DefaultConfig(), path, nil
	}
	if err != nil {
		return cfg, path, usageError("%v", err)
	}
	return cfg, path, nil
}

// settings is loadConfig for the commands that talk to a daemon or read
// its state: an invalid file is a warning naming the key, and they go on
// with the defaults, so that a typo cannot cost the owner their daemon.
// Only start, reload (the daemon refuses it) and config validate refuse
// an invalid file.
func (a *app) settings(h config.Home) (config.Config, string, error) {
	cfg, path, err := a.loadConfig(h)
	if err == nil || (a.configPath != "" && errors.Is(statErr(path), os.ErrNotExist)) {
		return cfg, path, err
	}
	fmt.Fprintf(a.stderr, "warning: %v (this command goes on with the defaults; oxios start and reload refuse the file)\n", strings.TrimPrefix(err.Error(), "oxios: "))
	return config.DefaultConfig(), path, nil
}

func statErr(path string) error {
	_, err := os.Stat(path)
	return err
}

// daemonURL finds the running daemon's API: $OXIOS_URL, else the address
// the daemon wrote into its PID file, else api.listen from the config.
func (a *app) daemonURL(h config.Home, cfg config.Config) string {
	if u := os.Getenv("OXIOS_URL"); u != "" {
		return u
	}
	if st, err := daemon.ReadStatus(h.PIDPath()); err == nil && st.State == daemon.Running && st.Listen != "" {
		return daemon.URL(st.Listen)
	}
	return daemon.URL(cfg.API.Listen)
}

// client returns an API client for the running daemon, authenticated with
// $OXIOS_TOKEN or the admin token in the home's secrets.
func (a *app) client() (*client.Client, error) {
	h, err := a.home()
	if err != nil {
		return nil, err
	}
	cfg, _, err := a.settings(h)
	if err != nil {
		return nil, err
	}
	return a.clientFor(h, cfg)
}

func (a *app) clientFor(h config.Home, cfg config.Config) (*client.Client, error) {
	tok := os.Getenv("OXIOS_TOKEN")
	if tok == "" {
		t, err := security.ReadToken(h.AdminTokenPath())
		if errors.Is(err, os.ErrNotExist) {
			return nil, failure(fmt.Errorf("no API token: %s does not exist (start the daemon once to create it, or set OXIOS_TOKEN)", h.AdminTokenPath()))
		}
		if err != nil {
			return nil, failure(err)
		}
		tok = t
	}
	return client.New(a.daemonURL(h, cfg), tok), nil
}
