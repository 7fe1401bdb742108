package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/kernel"
	"github.com/oxios/oxios/internal/logfile"
)

type startFlags struct {
	foreground bool
	detached   bool
	listen     string
}

func (a *app) startCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start the daemon in the background and wait until it is ready",
		Long: `Start the oxios daemon detached from the terminal, wait until it answers
/readyz (daemon.ready_timeout), and print its PID, log file and dashboard URL.
If it cannot become ready, the last lines of its log are shown and the daemon
is stopped. With --foreground the daemon runs in this process instead (for
systemd, containers and debugging); SIGTERM or SIGINT stops it gracefully.`,
		Example: `  oxios start
  oxios start --listen 127.0.0.1:4300
  oxios start --foreground`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.foreground {
				return a.runForeground(f)
			}
			return a.start(f)
		},
	}
	cmd.Flags().BoolVar(&f.foreground, "foreground", false, "run the daemon in this process instead of detaching")
	cmd.Flags().StringVar(&f.listen, "listen", "", "address to listen on, overriding api.listen (host:port)")
	cmd.Flags().BoolVar(&f.detached, "detached", false, "internal: set by 'oxios start' on the daemon it launches")
	cmd.Flags().MarkHidden("detached")
	return cmd
}

// prepare resolves home, config and listen address for start and restart.
// A listening socket handed over (systemd's socket activation, or
// OXIOS_LISTEN_FD) is the address. Everything is checked before anything
// is created, so bad input leaves no trace on disk.
func (a *app) prepare(listen string) (config.Home, config.Config, string, error) {
	h, err := a.home()
	if err != nil {
		return h, config.Config{}, "", err
	}
	cfg, path, err := a.loadConfig(h)
	if err != nil {
		return h, cfg, path, err
	}
	if listen != "" {
		if err := config.ValidateListen(listen); err != nil {
			return h, cfg, path, usageError("--listen: %v", err)
		}
		cfg.API.Listen = listen
	}
	if hd, err := daemon.Inherited(); err != nil {
		return h, cfg, path, usageError("%v", err)
	} else if hd != nil {
		if listen != "" && listen != hd.Addr() {
			return h, cfg, path, usageError("--listen: %s, but the socket handed over is on %s", listen, hd.Addr())
		}
		cfg.API.Listen = hd.Addr()
	}
	if cfg.EmbeddedCluster() {
		// Checked before anything starts: a node without the key would
		// only be refused at the routes.
		if _, err := cluster.LoadKey(h.ClusterKeyPath()); err != nil {
			return h, cfg, path, usageError("cluster.listen: %v", err)
		}
		if err := backbone.CheckDataFor(h.DataDir()); err != nil {
			return h, cfg, path, usageError("cluster.listen: %v", err)
		}
	}
	// The first start creates the home, and a commented config.toml unless
	// another file is named with --config.
	ensure := h.EnsureDirs
	if a.configPath == "" {
		ensure = func() error { _, err := h.Ensure(); return err }
	}
	if kernel.RestorePending(h.Dir) {
		// An interrupted restore is finished by the daemon first; a
		// default config or data directory made now would be in its way.
		ensure = func() error { return os.MkdirAll(h.Dir, 0o700) }
	}
	if err := ensure(); err != nil {
		return h, cfg, path, failure(err)
	}
	return h, cfg, path, nil
}

func (a *app) runForeground(f startFlags) error {
	h, cfg, path, err := a.prepare(f.listen)
	if err != nil {
		return err
	}
	// Under a service manager that sends stderr to the daemon's own log
	// (launchd's StandardErrorPath), writing the log to both would double
	// every line: treat that as detached.
	detached := f.detached || stderrIsLog(h.LogPath())
	o := kernel.Options{
		Config:     cfg,
		ConfigPath: path,
		Home:       h,
		Listen:     cfg.API.Listen,
		Detached:   detached,
		Stderr:     a.stderr,
	}
	if hd, _ := daemon.Inherited(); hd != nil {
		o.Listener = hd.Listener
	}
	err = kernel.Run(context.Background(), o)
	return failure(err)
}

func (a *app) start(f startFlags) error {
	h, cfg, cfgPath, err := a.prepare(f.listen)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return failure(fmt.Errorf("find the oxios binary: %w", err))
	}
	absCfg, err := filepath.Abs(cfgPath)
	if err != nil {
		return failure(err)
	}
	args := []string{"start", "--foreground", "--detached", "--config", absCfg, "--listen", cfg.API.Listen}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sp := newSpinner(a.stderr, "starting oxios")
	began := time.Now()
	so := daemon.StartOptions{
		Exe:          exe,
		Args:         args,
		PIDPath:      h.PIDPath(),
		LogPath:      h.LogPath(),
		Listen:       cfg.API.Listen,
		ReadyTimeout: cfg.Daemon.ReadyTimeout.Duration,
		StopTimeout:  cfg.Daemon.StopTimeout.Duration,
		Progress:     sp.tick,
	}
	if hd, _ := daemon.Inherited(); hd != nil {
		so.Listener = hd.File // handed on to the daemon
	}
	res, err := daemon.Start(ctx, so)
	sp.done()
	if res.StalePID != 0 {
		fmt.Fprintf(a.stderr, "removed stale PID file of a daemon that died (PID %d)\n", res.StalePID)
	}
	if err != nil {
		var se *daemon.StartError
		if errors.As(err, &se) {
			fmt.Fprintf(a.stderr, "oxios: %s\n", se.Reason)
			if len(se.LogTail) == 0 {
				fmt.Fprintf(a.stderr, "(the daemon wrote nothing to %s)\n", h.LogPath())
			} else {
				fmt.Fprintf(a.stderr, "--- last %d lines of %s ---\n", len(se.LogTail), h.LogPath())
				for _, l := range se.LogTail {
					fmt.Fprintln(a.stderr, l)
				}
			}
			return &exitError{code: exitFailure}
		}
		return failure(err)
	}
	took := time.Since(began)
	url := daemon.URL(cfg.API.Listen) + "/"
	if a.output == "json" {
		return printJSON(a.stdout, map[string]any{
			"pid": res.PID, "log": h.LogPath(), "dashboard": url, "ready_ms": took.Milliseconds(),
		})
	}
	fmt.Fprintf(a.stdout, "oxios started (PID %d), ready in %s\n", res.PID, took.Round(time.Millisecond))
	fmt.Fprintf(a.stdout, "  log:       %s\n", h.LogPath())
	fmt.Fprintf(a.stdout, "  dashboard: %s\n", url)
	return nil
}

func (a *app) stopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop the daemon gracefully (SIGKILL after daemon.stop_timeout)",
		Long: `Send SIGTERM to the daemon and wait up to daemon.stop_timeout for it to shut
down; if it is still running then, send SIGKILL. Exits 0 once the daemon is
gone, and also when it was not running.`,
		Example: "  oxios stop",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.home()
			if err != nil {
				return err
			}
			cfg, _, err := a.settings(h)
			if err != nil {
				return err
			}
			return a.stop(h, cfg)
		},
	}
}

func (a *app) stop(h config.Home, cfg config.Config) error {
	if st, err := daemon.ReadStatus(h.PIDPath()); err == nil && st.State == daemon.Running && st.Listen == restoreMark {
		return failure(fmt.Errorf("a restore is running (PID %d), not the daemon; wait for it to finish", st.PID))
	}
	timeout := cfg.Daemon.StopTimeout.Duration
	sp := newSpinner(a.stderr, "stopping oxios")
	res, err := daemon.Stop(context.Background(), h.PIDPath(), timeout)
	sp.done()
	if err != nil {
		return failure(err)
	}
	var msg string
	switch {
	case res.StaleRemoved:
		msg = fmt.Sprintf("oxios is not running; removed the stale PID file of PID %d", res.PID)
	case !res.WasRunning:
		msg = "oxios is not running"
	case res.Killed:
		msg = fmt.Sprintf("oxios (PID %d) did not stop within %s after SIGTERM; killed it with SIGKILL", res.PID, timeout)
	default:
		msg = fmt.Sprintf("oxios stopped (PID %d)", res.PID)
	}
	if a.output == "json" {
		return printJSON(a.stdout, map[string]any{"was_running": res.WasRunning, "pid": res.PID, "killed": res.Killed, "stale_removed": res.StaleRemoved})
	}
	fmt.Fprintln(a.stdout, msg)
	return nil
}

func (a *app) restartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:     "restart",
		Short:   "Stop the daemon if it is running, then start it",
		Example: "  oxios restart",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, cfg, _, err := a.prepare(f.listen)
			if err != nil {
				return err
			}
			// Without --listen, come back on the address the daemon had.
			if st, err := daemon.ReadStatus(h.PIDPath()); err == nil && st.State == daemon.Running && f.listen == "" && st.Listen != "" {
				f.listen = st.Listen
			}
			if err := a.stop(h, cfg); err != nil {
				return err
			}
			return a.start(f)
		},
	}
	cmd.Flags().StringVar(&f.listen, "listen", "", "address to listen on, overriding api.listen (host:port)")
	return cmd
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the daemon is running and whether its API answers",
		Long: `Show the daemon's state from its PID file (running, stale or stopped), its
PID, uptime, version and listen address, and whether the API answers.

Exit codes: 0 running, 1 stale PID file (the daemon died), 3 stopped.`,
		Example: "  oxios status\n  oxios status -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.status()
		},
	}
}

type statusReport struct {
	State         string  `json:"state"`
	PID           int     `json:"pid,omitempty"`
	UptimeSeconds float64 `json:"uptime_seconds,omitempty"`
	Version       string  `json:"version,omitempty"`
	Listen        string  `json:"listen,omitempty"`
	URL           string  `json:"url,omitempty"`
	APIAnswers    bool    `json:"api_answers"`
	APIError      string  `json:"api_error,omitempty"`
	Home          string  `json:"home"`
}

func (a *app) status() error {
	h, err := a.home()
	if err != nil {
		return err
	}
	cfg, _, err := a.settings(h)
	if err != nil {
		return err
	}
	st, err := daemon.ReadStatus(h.PIDPath())
	if err != nil {
		return failure(err)
	}
	rep := statusReport{State: string(st.State), PID: st.PID, Home: h.Dir}
	if st.State == daemon.Running {
		rep.Listen = st.Listen
		rep.UptimeSeconds = time.Since(st.Since).Seconds()
		c, err := a.clientFor(h, cfg)
		if err == nil {
			rep.URL = c.BaseURL()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			sys, err2 := c.System(ctx)
			cancel()
			err = err2
			var ce *client.Error
			if errors.As(err, &ce) {
				// It answered, but not to our token.
				rep.APIAnswers = true
				err = fmt.Errorf("the API rejected the token (%s); set OXIOS_TOKEN or check %s", ce.Message, h.AdminTokenPath())
			}
			if err == nil {
				rep.APIAnswers = true
				rep.Version = sys.Version + " (" + sys.Commit + ")"
				rep.UptimeSeconds = sys.UptimeSeconds
				rep.Listen = sys.Listen
			}
		}
		if err != nil {
			rep.APIError = err.Error()
		}
	}
	code := exitOK
	switch st.State {
	case daemon.Stale:
		code = exitFailure
	case daemon.Stopped:
		code = exitStopped
	}
	if a.output == "json" {
		if err := printJSON(a.stdout, rep); err != nil {
			return err
		}
	} else {
		a.printStatus(rep)
	}
	if code != exitOK {
		return &exitError{code: code}
	}
	return nil
}

func (a *app) printStatus(r statusReport) {
	c := newColors(a.stdout)
	switch daemon.State(r.State) {
	case daemon.Stopped:
		fmt.Fprintf(a.stdout, "oxios is %s\n", c.yellow("stopped"))
		return
	case daemon.Stale:
		fmt.Fprintf(a.stdout, "oxios is %s: PID file of PID %d is left, but no daemon holds it (it died; 'oxios start' cleans it up)\n", c.red("not running"), r.PID)
		return
	}
	fmt.Fprintf(a.stdout, "oxios is %s\n", c.green("running"))
	rows := [][2]string{
		{"PID", fmt.Sprint(r.PID)},
		{"uptime", (time.Duration(r.UptimeSeconds) * time.Second).String()},
	}
	if r.Version != "" {
		rows = append(rows, [2]string{"version", r.Version})
	}
	rows = append(rows, [2]string{"listen", r.Listen})
	switch {
	case r.APIAnswers && r.APIError != "":
		rows = append(rows, [2]string{"API", c.yellow("answering") + " at " + r.URL + ", but " + r.APIError})
	case r.APIAnswers:
		rows = append(rows, [2]string{"API", c.green("answering") + " at " + r.URL})
	default:
		rows = append(rows, [2]string{"API", c.red("not answering") + ": " + r.APIError})
	}
	rows = append(rows, [2]string{"home", r.Home})
	printFields(a.stdout, rows)
}

func (a *app) logsCmd() *cobra.Command {
	var n int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the daemon log",
		Long: `Show the last lines of the daemon log ($OXIOS_HOME/logs/oxios.log). With -f,
keep printing new lines as they are written, across log rotation, until
interrupted.`,
		Example: "  oxios logs\n  oxios logs -n 200\n  oxios logs -f",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("-n: must be 0 or more (got %d)", n)
			}
			h, err := a.home()
			if err != nil {
				return err
			}
			path := h.LogPath()
			var offset int64
			if fi, err := os.Stat(path); err == nil {
				offset = fi.Size()
			} else if !follow {
				return failure(fmt.Errorf("no daemon log at %s (has the daemon been started?)", path))
			}
			lines, err := logfile.Tail(path, n)
			if err != nil {
				return failure(err)
			}
			for _, l := range lines {
				fmt.Fprintln(a.stdout, l)
			}
			if !follow {
				return nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return failure(logfile.Follow(ctx, path, offset, a.stdout, 200*time.Millisecond))
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 50, "number of lines to show")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	return cmd
}

// stderrIsLog reports whether this process's stderr is the file at path.
func stderrIsLog(path string) bool {
	a, err := os.Stderr.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}
