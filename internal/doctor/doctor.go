// Package doctor checks an installation of oxios and says how to fix what
// is wrong: the config file, the permissions of the home and its secrets,
// the daemon's state, the listen address, the storage and the audit trail
// of a running daemon, the free disk, what the kernel offers the sandbox,
// and whether the model providers have API keys (without calling them).
package doctor

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

	"github.com/oxios/oxios/internal/agent"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/oxios"
)

// Finding is the outcome of one check.
type Finding struct {
	Check string `json:"check"`
	// Status is ok, warn or fail; a fail needs fixing.
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Options are what the checks look at.
type Options struct {
	Home config.Home
	// Config is the config in use; when ConfigErr says why it does not
	// load, the defaults.
	Config     config.Config
	ConfigPath string
	ConfigErr  error
	// Client returns a client of the running daemon, with a token when
	// auth is set (the probes need none).
	Client func(auth bool) (*client.Client, error)
}

// Failed reports whether a finding needs fixing, and names the first.
func Failed(fs []Finding) (string, bool) {
	for _, f := range fs {
		if f.Status == "fail" {
			return f.Check, true
		}
	}
	return "", false
}

// checkup gathers the findings.
type checkup struct {
	Options
	out []Finding
	// running is set when the daemon runs; status is its PID file's.
	running bool
	status  daemon.Status
}

func (c *checkup) add(check, status, detail, fix string) {
	c.out = append(c.out, Finding{Check: check, Status: status, Detail: detail, Fix: fix})
}

// Run runs every check, in the order they are shown.
func Run(o Options) []Finding {
	c := &checkup{Options: o}
	c.config()
	c.perms()
	c.daemon()
	c.listen()
	if c.running {
		c.storage()
		c.audit()
	}
	c.disk()
	c.sandbox()
	c.providers()
	return c.out
}

func (c *checkup) config() {
	switch _, serr := os.Stat(c.ConfigPath); {
	case c.ConfigErr != nil:
		c.add("config", "fail", strings.TrimPrefix(c.ConfigErr.Error(), "oxios: "), "edit "+c.ConfigPath+" (oxios config validate names the key; oxios config show lists the keys)")
	case serr != nil:
		c.add("config", "ok", "no "+c.ConfigPath+": the defaults apply", "")
	default:
		c.add("config", "ok", c.ConfigPath+" is valid", "")
	}
}

// perms checks the modes and owners of the home, its secrets and the
// config file in use (it may hold API keys).
func (c *checkup) perms() {
	h := c.Home
	c.perm(h.Dir, 0o700, true)
	c.perm(h.SecretsDir(), 0o700, true)
	c.perm(h.AdminTokenPath(), 0o600, false)
	c.perm(h.AuditKeyPath(), 0o600, false)
	c.perm(c.ConfigPath, 0o600, false)
}

func (c *checkup) perm(p string, want fs.FileMode, dir bool) {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return // created by the first start, with the right mode
	}
	if err != nil {
		c.add("perms", "fail", err.Error(), "check that "+filepath.Dir(p)+" is yours and readable")
		return
	}
	if dir != fi.IsDir() {
		c.add("perms", "fail", p+" is not a "+map[bool]string{true: "directory", false: "file"}[dir], "move it away; oxios start recreates it")
		return
	}
	if got := fi.Mode().Perm(); got&^want != 0 {
		c.add("perms", "fail", fmt.Sprintf("%s is %04o; others can read it", p, got), fmt.Sprintf("chmod %o %s", want, p))
		return
	}
	// (root may look at anyone's home; telling it to chown would break the
	// service of the user who owns it.)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Getuid() != 0 && int(st.Uid) != os.Getuid() {
		c.add("perms", "fail", fmt.Sprintf("%s belongs to uid %d, not to you (%d)", p, st.Uid, os.Getuid()), fmt.Sprintf("chown %d %s", os.Getuid(), p))
		return
	}
	c.add("perms", "ok", fmt.Sprintf("%s is %04o", p, fi.Mode().Perm()), "")
}

func (c *checkup) daemon() {
	st, err := daemon.ReadStatus(c.Home.PIDPath())
	switch {
	case err != nil:
		c.add("daemon", "fail", err.Error(), "remove "+c.Home.PIDPath()+" if no oxios runs (pgrep -a oxios)")
	case st.State == daemon.Running:
		c.running, c.status = true, st
		c.add("daemon", "ok", fmt.Sprintf("running (PID %d) on %s for %s", st.PID, st.Listen, time.Since(st.Since).Round(time.Second)), "")
	case st.State == daemon.Stale:
		c.add("daemon", "fail", fmt.Sprintf("stale PID file: PID %d is not running (the daemon died)", st.PID), "oxios start (it replaces the stale file; see oxios logs for why it died)")
	default:
		c.add("daemon", "ok", "stopped", "")
	}
}

func (c *checkup) listen() {
	listen := c.Config.API.Listen
	if c.running && c.status.Listen != "" {
		listen = c.status.Listen
	}
	host, port, _ := net.SplitHostPort(listen)
	switch ip := net.ParseIP(host); {
	case host != "localhost" && (ip == nil || !ip.IsLoopback()):
		c.add("listen", "warn", listen+" is reachable from the network (every API route still needs a token)", `set api.listen = "127.0.0.1:4200" unless other machines must reach it`)
	case c.running:
		c.add("listen", "ok", listen+" (loopback)", "")
	default:
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			c.add("listen", "fail", listen+" is taken by another program: "+err.Error(), fmt.Sprintf("find it with: ss -ltnp 'sport = :%s', or set api.listen", port))
			return
		}
		ln.Close()
		c.add("listen", "ok", listen+" is free", "")
	}
}

// storage asks the running daemon's /readyz whether every part is ready,
// and reports the damage a ready part runs on with.
func (c *checkup) storage() {
	cl, err := c.Client(false)
	if err != nil {
		c.add("storage", "fail", err.Error(), "")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	code, body, gerr := cl.Probe(ctx, "/readyz")
	cancel()
	switch {
	case gerr != nil:
		c.add("storage", "fail", "the daemon does not answer: "+gerr.Error(), "oxios logs -n 50; oxios restart")
	case code != 200:
		c.add("storage", "fail", "not ready: "+strings.TrimSpace(body), "oxios logs -n 50")
	default:
		c.add("storage", "ok", "every part is ready", "")
	}
	var rd oxios.Readiness
	if code == 200 && json.Unmarshal([]byte(body), &rd) == nil {
		for _, d := range rd.Damaged {
			c.add("damage", "fail", d, "oxios audit verify; see the README's Audit section")
		}
	}
}

func (c *checkup) audit() {
	cl, err := c.Client(true)
	if err != nil {
		return // no token here: verify is for whoever holds one
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	v, err := cl.AuditVerify(ctx)
	cancel()
	switch {
	case err != nil:
		c.add("audit", "warn", "could not verify the audit trail: "+err.Error(), "oxios audit verify")
	case !v.OK:
		c.add("audit", "fail", fmt.Sprintf("broken at entry %d: %s (%d entries missing in all)", v.FirstBroken, v.Reason, v.Missing), "oxios audit verify lists every break; see the README's Audit section")
	default:
		c.add("audit", "ok", fmt.Sprintf("%d entries verify, up to the signed head", v.Entries), "")
	}
}

func (c *checkup) disk() {
	var sfs syscall.Statfs_t
	dir := c.Home.DataDir()
	if _, err := os.Stat(dir); err != nil {
		dir = c.Home.Dir
		if _, err := os.Stat(dir); err != nil {
			dir = "/"
		}
	}
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return
	}
	free := sfs.Bavail * uint64(sfs.Bsize)
	total := sfs.Blocks * uint64(sfs.Bsize)
	detail := fmt.Sprintf("%s free of %s on %s", Bytes(free), Bytes(total), dir)
	switch {
	case free < 256<<20:
		c.add("disk", "fail", detail, "free disk space: JetStream stops accepting writes when the disk is full")
	case free < 1<<30 || (total > 0 && free*20 < total):
		c.add("disk", "warn", detail, "free disk space, or lower events.max_mb")
	default:
		c.add("disk", "ok", detail, "")
	}
}

// providers says which providers have an API key, without calling out:
// the running daemon's (its environment may differ from this shell's),
// else this environment's.
func (c *checkup) providers() {
	var daemonHas map[string]bool
	if c.running {
		if cl, err := c.Client(true); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if sys, err := cl.System(ctx); err == nil {
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
	cfg := c.Config
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
			c.add("providers", "ok", p.name+": an API key is set", "")
		case prov == p.name:
			c.add("providers", "warn", fmt.Sprintf("%s: no API key, and agent.default_model (%s) uses it: llm agents will fail", p.name, cfg.Agent.DefaultModel),
				fmt.Sprintf("set %s in the daemon's environment, or providers.%s.api_key in %s (0600)", agent.KeyEnv[p.name], p.name, c.ConfigPath))
		default:
			c.add("providers", "ok", p.name+": no API key (not the default model's provider)", "")
		}
	}
}

// Bytes is n for people: GiB, MiB or KiB.
func Bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
