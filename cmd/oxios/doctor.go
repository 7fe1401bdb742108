package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/agent"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/sandbox"
)

// finding is one check of oxios doctor.
type finding struct {
	Check  string `json:"check"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

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
			for _, f := range fs {
				if f.Status == "fail" {
					return failure(fmt.Errorf("%s needs fixing (see above)", f.Check))
				}
			}
			return nil
		},
	}
}

func (a *app) doctor() []finding {
	var out []finding
	add := func(check, status, detail, fix string) {
		out = append(out, finding{Check: check, Status: status, Detail: detail, Fix: fix})
	}
	h, err := a.home()
	if err != nil {
		add("home", "fail", err.Error(), "set OXIOS_HOME to a directory you own")
		return out
	}

	// Config.
	cfg, path, err := a.loadConfig(h)
	switch {
	case err != nil:
		add("config", "fail", strings.TrimPrefix(err.Error(), "oxios: "), "edit "+path+" (oxios config validate names the key; oxios config show lists the keys)")
		cfg = config.DefaultConfig()
	default:
		if _, serr := os.Stat(path); serr != nil {
			add("config", "ok", "no "+path+": the defaults apply", "")
		} else {
			add("config", "ok", path+" is valid", "")
		}
	}

	// Permissions of the home and its secrets.
	perm := func(p string, want fs.FileMode, dir bool) {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return // created by the first start, with the right mode
		}
		if err != nil {
			add("perms", "fail", err.Error(), "check that "+filepath.Dir(p)+" is yours and readable")
			return
		}
		if dir != fi.IsDir() {
			add("perms", "fail", p+" is not a "+map[bool]string{true: "directory", false: "file"}[dir], "move it away; oxios start recreates it")
			return
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			add("perms", "fail", fmt.Sprintf("%s is %04o; others can read it", p, got), fmt.Sprintf("chmod %o %s", want, p))
			return
		}
		// (root may look at anyone's home; telling it to chown would break
		// the service of the user who owns it.)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Getuid() != 0 && int(st.Uid) != os.Getuid() {
			add("perms", "fail", fmt.Sprintf("%s belongs to uid %d, not to you (%d)", p, st.Uid, os.Getuid()), fmt.Sprintf("chown %d %s", os.Getuid(), p))
			return
		}
		add("perms", "ok", fmt.Sprintf("%s is %04o", p, fi.Mode().Perm()), "")
	}
	perm(h.Dir, 0o700, true)
	perm(h.SecretsDir(), 0o700, true)
	perm(h.AdminTokenPath(), 0o600, false)
	perm(h.AuditKeyPath(), 0o600, false)
	perm(path, 0o600, false) // the config file in use: it may hold API keys

	// Daemon state, listen address, storage.
	st, err := daemon.ReadStatus(h.PIDPath())
	running := false
	switch {
	case err != nil:
		add("daemon", "fail", err.Error(), "remove "+h.PIDPath()+" if no oxios runs (pgrep -a oxios)")
	case st.State == daemon.Running:
		running = true
		add("daemon", "ok", fmt.Sprintf("running (PID %d) on %s for %s", st.PID, st.Listen, time.Since(st.Since).Round(time.Second)), "")
	case st.State == daemon.Stale:
		add("daemon", "fail", fmt.Sprintf("stale PID file: PID %d is not running (the daemon died)", st.PID), "oxios start (it replaces the stale file; see oxios logs for why it died)")
	default:
		add("daemon", "ok", "stopped", "")
	}
	listen := cfg.API.Listen
	if running && st.Listen != "" {
		listen = st.Listen
	}
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		add("listen", "warn", listen+" is reachable from the network (every API route still needs a token)", `set api.listen = "127.0.0.1:4200" unless other machines must reach it`)
	} else if !running {
		if ln, err := net.Listen("tcp", listen); err != nil {
			add("listen", "fail", listen+" is taken by another program: "+err.Error(), fmt.Sprintf("find it with: ss -ltnp 'sport = :%s', or set api.listen", portOf(listen)))
		} else {
			ln.Close()
			add("listen", "ok", listen+" is free", "")
		}
	} else {
		add("listen", "ok", listen+" (loopback)", "")
	}
	if running {
		c := client.New(a.daemonURL(h, cfg), "") // probes need no token
		{
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			code, body, gerr := c.Probe(ctx, "/readyz")
			cancel()
			switch {
			case gerr != nil:
				add("storage", "fail", "the daemon does not answer: "+gerr.Error(), "oxios logs -n 50; oxios restart")
			case code != 200:
				add("storage", "fail", "not ready: "+strings.TrimSpace(body), "oxios logs -n 50")
			default:
				add("storage", "ok", "every part is ready", "")
			}
			var rd oxios.Readiness
			if code == 200 && json.Unmarshal([]byte(body), &rd) == nil {
				for _, d := range rd.Damaged {
					add("damage", "fail", d, "oxios audit verify; see the README's Audit section")
				}
			}
		}
		if ac, err := a.clientFor(h, cfg); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			v, err := ac.AuditVerify(ctx)
			cancel()
			switch {
			case err != nil:
				add("audit", "warn", "could not verify the audit trail: "+err.Error(), "oxios audit verify")
			case !v.OK:
				add("audit", "fail", fmt.Sprintf("broken at entry %d: %s (%d entries missing in all)", v.FirstBroken, v.Reason, v.Missing), "oxios audit verify lists every break; see the README's Audit section")
			default:
				add("audit", "ok", fmt.Sprintf("%d entries verify, up to the signed head", v.Entries), "")
			}
		}
	}
	var sfs syscall.Statfs_t
	dir := h.DataDir()
	if _, err := os.Stat(dir); err != nil {
		dir = h.Dir
		if _, err := os.Stat(dir); err != nil {
			dir = "/"
		}
	}
	if err := syscall.Statfs(dir, &sfs); err == nil {
		free := sfs.Bavail * uint64(sfs.Bsize)
		total := sfs.Blocks * uint64(sfs.Bsize)
		detail := fmt.Sprintf("%s free of %s on %s", bytesHuman(free), bytesHuman(total), dir)
		switch {
		case free < 256<<20:
			add("disk", "fail", detail, "free disk space: JetStream stops accepting writes when the disk is full")
		case free < 1<<30 || (total > 0 && free*20 < total):
			add("disk", "warn", detail, "free disk space, or lower events.max_mb")
		default:
			add("disk", "ok", detail, "")
		}
	}

	// Provider keys, without calling out: the running daemon's (its
	// environment may differ from this shell's), else this environment's.
	var daemonHas map[string]bool
	if running {
		if c, err := a.clientFor(h, cfg); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if sys, err := c.System(ctx); err == nil {
				daemonHas = map[string]bool{}
				if ps, ok := sys.Config["providers_with_keys"].([]any); ok {
					for _, p := range ps {
						daemonHas[fmt.Sprint(p)] = true
					}
				}
			}
			cancel()
		}
	}
	doctorSandbox(cfg, add)
	prov, _, _ := agent.SplitModel(cfg.Agent.DefaultModel)
	for _, p := range []struct{ name, key string }{
		{"openai", cfg.Providers.OpenAI.APIKey},
		{"anthropic", cfg.Providers.Anthropic.APIKey},
	} {
		has := agent.HasKey(p.name, p.key)
		if daemonHas != nil {
			has = daemonHas[p.name]
		}
		switch {
		case has:
			add("providers", "ok", p.name+": an API key is set", "")
		case prov == p.name:
			add("providers", "warn", fmt.Sprintf("%s: no API key, and agent.default_model (%s) uses it: llm agents will fail", p.name, cfg.Agent.DefaultModel),
				fmt.Sprintf("set %s in the daemon's environment, or providers.%s.api_key in %s (0600)", agent.KeyEnv[p.name], p.name, path))
		default:
			add("providers", "ok", p.name+": no API key (not the default model's provider)", "")
		}
	}
	return out
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func bytesHuman(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// doctorSandbox reports what the kernel offers the sandbox, and the
// sandbox agents get by default.
func doctorSandbox(cfg config.Config, add func(check, status, detail, fix string)) {
	k := sandbox.Probe()
	sb := cfg.Sandbox
	switch {
	case k.Landlock > 0:
		add("sandbox", "ok", fmt.Sprintf("Landlock ABI %d: files, TCP (ABI 4+) and signals (ABI 6+) are confined", k.Landlock), "")
	case sb.Mode == sandbox.Enforce:
		add("sandbox", "fail", k.LandlockWhy+`: with sandbox.mode = "enforce" no agent will start`,
			`use a kernel with Landlock (5.13+, "landlock" in the lsm= boot parameter), or set sandbox.mode = "best_effort" in the config (agents then run unconfined)`)
	default:
		add("sandbox", "warn", k.LandlockWhy+": agents run without filesystem confinement (sandbox.mode = \""+sb.Mode+"\")", "use a kernel with Landlock (5.13+)")
	}
	if k.NetNS {
		add("sandbox", "ok", `network namespaces: network "none" and "loopback" are enforced by a namespace`, "")
	} else {
		add("sandbox", "warn", k.NetNSWhy+`: network "none" confines TCP only (Landlock), "loopback" cannot be enforced`, "run the daemon with CAP_SYS_ADMIN (e.g. as root) for network namespaces")
	}
	if k.Limits {
		add("sandbox", "ok", "resource limits are set before an agent's first instruction", "")
	} else {
		add("sandbox", "fail", k.LimitsWhy, "allow ptrace of the daemon's own children (seccomp, Yama ptrace_scope < 3)")
	}
	add("sandbox", "warn", k.Cgroup+": memory and CPU are limited per process (RLIMIT_DATA, RLIMIT_CPU), not per agent", "no fix yet: oxios does not manage delegated cgroups")
	if k.Root {
		add("sandbox", "warn", "the daemon runs as root: agents run as uid 0 (with no capabilities), so a unix socket such as /run/docker.sock is theirs to connect to (Landlock does not confine that before ABI 9), and the kernel exempts uid 0 from RLIMIT_NPROC, so only oxios's own count (every 250 ms) stops a fork bomb",
			"run the daemon as a user (oxios service install --system --run-as USER)")
	}
	l := sb.Limits
	add("sandbox", "ok", fmt.Sprintf("default: mode %s; network %s for process agents, %s for exec; limits memory %s, CPU %s, open files %s, processes %s, file size %s",
		sb.Mode, sb.Network, sb.ExecNetwork, limit(l.MemoryMB, " MiB"), limit(l.CPUSeconds, " s"), limit(l.OpenFiles, ""), limit(l.Processes, ""), limit(l.FileSizeMB, " MiB")), "")
}

func limit(v int64, unit string) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprint(v) + unit
}
