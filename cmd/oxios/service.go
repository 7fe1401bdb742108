package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/fileutil"
	"github.com/oxios/oxios/internal/service"
)

type serviceFlags struct {
	user, system, dryRun bool
	runAs                string
	uninstall            bool // needs no valid config
}

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install oxios as a systemd or launchd service",
		Long: `Install writes a service for the system's service manager and enables it:
a systemd unit on Linux (Type=notify, restart on failure with backoff,
hardening for system units), a launchd agent or daemon on macOS (started at
load, kept alive, logging to the file 'oxios logs' reads). --user (the
default) installs the service of your own user; --system one for the whole
machine (root needed) that runs as --run-as. --dry-run prints the file and
where it would go, and changes nothing.`,
		Example: `  oxios service install --dry-run
  oxios service install
  sudo oxios service install --system --run-as oxios
  oxios service uninstall`,
		Args: noArgs,
	}
	cmd.AddCommand(a.serviceInstallCmd(), a.serviceUninstallCmd())
	return cmd
}

func addServiceFlags(cmd *cobra.Command, f *serviceFlags) {
	cmd.Flags().BoolVar(&f.user, "user", false, "your own user's service (the default)")
	cmd.Flags().BoolVar(&f.system, "system", false, "a system-wide service (needs root)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print what would be done; change nothing")
	cmd.MarkFlagsMutuallyExclusive("user", "system")
}

// serviceTarget renders the service the flags ask for: its home is the
// user's it runs as (under sudo, not root's) unless OXIOS_HOME names one,
// and its config is that home's.
func (a *app) serviceTarget(f serviceFlags) (service.Target, error) {
	bin, err := service.Binary()
	switch {
	case runtime.GOOS != "linux" && runtime.GOOS != "darwin":
		return service.Target{}, usageError("%v", service.ErrUnsupported)
	case errors.Is(err, service.ErrTemporaryBinary):
		return service.Target{}, usageError("%v", err)
	case err != nil:
		return service.Target{}, failure(err)
	}
	h, err := a.home()
	if err != nil {
		return service.Target{}, err
	}
	o := service.Options{Binary: bin, System: f.system}
	if f.system {
		o.User = service.RunAs(f.runAs)
		if os.Getenv("OXIOS_HOME") == "" {
			u, err := user.Lookup(o.User)
			switch {
			case err == nil:
				h = config.Home{Dir: filepath.Join(u.HomeDir, ".oxios")}
			case !f.uninstall: // removing the unit of a deleted user must work
				return service.Target{}, usageError("--run-as: no user %q on this machine", o.User)
			}
		}
	} else if f.runAs != "" {
		return service.Target{}, usageError("--run-as is for --system services (a user service runs as you)")
	}
	cfg, path := config.DefaultConfig(), h.ConfigPath()
	if !f.uninstall {
		if cfg, path, err = a.loadConfig(h); err != nil {
			return service.Target{}, err
		}
	}
	o.Home = h.Dir
	if o.Config, err = filepath.Abs(path); err != nil {
		return service.Target{}, failure(err)
	}
	o.StopTimeoutSec = 30 + int(cfg.Agents.StopTimeout.Seconds())
	t, err := service.NewTarget(o)
	if err != nil {
		return service.Target{}, usageError("%v", err)
	}
	return t, nil
}

func (a *app) serviceInstallCmd() *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:     "install [--user|--system] [--dry-run]",
		Short:   "Write and enable the service",
		Example: "  oxios service install --dry-run\n  oxios service install\n  sudo oxios service install --system --run-as oxios",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.serviceTarget(f)
			if err != nil {
				return err
			}
			var steps [][]string
			if t.Launchd {
				steps = [][]string{t.Manage("load", "-w", t.Path)}
			} else {
				steps = [][]string{t.Manage("daemon-reload"), t.Manage("enable", "--now", service.UnitName)}
			}
			if f.dryRun {
				fmt.Fprintf(a.stderr, "would write %s:\n", t.Path)
				fmt.Fprint(a.stdout, t.Content)
				for _, s := range steps {
					fmt.Fprintf(a.stderr, "would run: %s\n", strings.Join(s, " "))
				}
				return nil
			}
			if err := fileutil.WriteAtomic(t.Path, []byte(t.Content), 0o644); err != nil {
				hint := ""
				if t.System && errors.Is(err, os.ErrPermission) {
					hint = " (a system service needs root: sudo oxios service install --system)"
				}
				return failure(fmt.Errorf("cannot write %s: %v%s; nothing was changed", t.Path, err, hint))
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", t.Path)
			h, _ := a.home()
			if st, err := daemon.ReadStatus(h.PIDPath()); err == nil && st.State == daemon.Running && !t.Launchd {
				// The service would find this daemon and refuse to start.
				steps[len(steps)-1] = t.Manage("enable", service.UnitName)
				defer fmt.Fprintf(a.stderr, "a daemon is running outside the service (PID %d): stop it with 'oxios stop', then: %s\n",
					st.PID, strings.Join(t.Manage("start", service.UnitName), " "))
			}
			for _, s := range steps {
				if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
					var rest []string
					for _, r := range steps {
						rest = append(rest, strings.Join(r, " "))
					}
					return failure(fmt.Errorf("%s failed: %v %s; the file is written, run: %s", strings.Join(s, " "), err,
						strings.TrimSpace(string(out)), strings.Join(rest, " && ")))
				}
			}
			fmt.Fprintf(a.stdout, "enabled; status: %s\n", strings.Join(t.Manage("status", "oxios"), " "))
			return nil
		},
	}
	addServiceFlags(cmd, &f)
	cmd.Flags().StringVar(&f.runAs, "run-as", "", "the user a --system service runs as (default: $SUDO_USER, else you)")
	return cmd
}

func (a *app) serviceUninstallCmd() *cobra.Command {
	f := serviceFlags{uninstall: true}
	cmd := &cobra.Command{
		Use:     "uninstall [--user|--system] [--dry-run]",
		Short:   "Stop, disable and remove the service",
		Example: "  oxios service uninstall\n  sudo oxios service uninstall --system",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.serviceTarget(f)
			if err != nil {
				return err
			}
			if _, err := os.Stat(t.Path); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(a.stderr, "not installed: %s does not exist\n", t.Path)
				return nil
			}
			stop := t.Manage("disable", "--now", service.UnitName)
			if t.Launchd {
				stop = t.Manage("unload", "-w", t.Path)
			}
			if f.dryRun {
				fmt.Fprintf(a.stderr, "would run: %s\nwould remove %s\n", strings.Join(stop, " "), t.Path)
				return nil
			}
			if out, err := exec.Command(stop[0], stop[1:]...).CombinedOutput(); err != nil {
				fmt.Fprintf(a.stderr, "%s: %v %s (removing the file anyway)\n", strings.Join(stop, " "), err, strings.TrimSpace(string(out)))
			}
			if err := os.Remove(t.Path); err != nil {
				return failure(fmt.Errorf("cannot remove %s: %w", t.Path, err))
			}
			if !t.Launchd {
				exec.Command("systemctl", t.Manage("daemon-reload")[1:]...).Run()
			}
			fmt.Fprintf(a.stdout, "removed %s\n", t.Path)
			return nil
		},
	}
	addServiceFlags(cmd, &f)
	return cmd
}
