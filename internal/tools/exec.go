package tools

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/proc"
	"github.com/oxios/oxios/internal/sandbox"
)

// capped keeps the first max bytes written to it and counts the rest.
type capped struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - len(c.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += len(p) - max(room, 0)
	return len(p), nil
}

// tail is the end of what was kept.
func (c *capped) tail() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf[max(0, len(c.buf)-4<<10):]
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(c.buf)
	if c.dropped > 0 {
		s += fmt.Sprintf("\n[output truncated: %d more bytes]", c.dropped)
	}
	return s
}

// lookPath finds name on path (a PATH value).
func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: program not found on PATH", name)
}

func (g *Gate) execTimeout() time.Duration {
	if d, err := time.ParseDuration(g.exec.Timeout); err == nil && d > 0 {
		return d
	}
	return time.Minute
}

func (g *Gate) maxOutput() int {
	if g.exec.MaxOutputKB > 0 {
		return g.exec.MaxOutputKB << 10
	}
	return 64 << 10
}

// execTool runs an allowed program in the workspace, in its own process
// group, with only the allowed environment; at the timeout (or when ctx
// ends) the whole group is killed.
func execTool(ctx context.Context, g *Gate, sb sandbox.Policy, agentID, command string, args []string, shell bool, env map[string]string) (string, error) {
	if command == "" {
		return "", errors.New("command is required")
	}
	var path string
	if shell {
		if err := g.Shell(); err != nil {
			return "", err
		}
		path, args = "/bin/sh", []string{"-c", strings.Join(append([]string{command}, args...), " ")}
	} else {
		p, err := g.Program(command, sandboxPath(sb))
		if err != nil {
			return "", err
		}
		if err := g.Args(args); err != nil {
			return "", err
		}
		path = p
	}
	// OXIOS_AGENT_ID marks the program as the agent's: if the daemon dies
	// while it runs, the next boot finds and stops it. git reads no
	// configuration but the repository's own (which runs, if at all,
	// inside the sandbox).
	// OXIOS_EXEC_ID marks this call's processes: what left the group
	// (setsid) is found by it and killed when the call ends.
	callTag := "OXIOS_EXEC_ID=" + rand.Text()
	vars := []string{"PATH=" + sandboxPath(sb), "HOME=" + g.Workspace(), "LANG=C.UTF-8", "OXIOS_AGENT_ID=" + agentID,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", callTag}
	if sb.Mode != sandbox.Off {
		vars = append(vars, "TMPDIR="+sb.Tmp, "TMP="+sb.Tmp, "TEMP="+sb.Tmp)
	}
	for k := range env {
		if !slices.Contains(g.exec.Env, k) {
			return "", &Denied{Tool: "exec", Rule: "exec", Target: k, Reason: fmt.Sprintf("environment variable %s is not allowed (allowed: %s)", k, strings.Join(g.exec.Env, ", "))}
		}
	}
	for _, k := range g.exec.Env {
		if v, ok := env[k]; ok {
			vars = append(vars, k+"="+v)
		} else if v, ok := os.LookupEnv(k); ok {
			vars = append(vars, k+"="+v)
		}
	}
	timeout := g.execTimeout()
	out := &capped{max: g.maxOutput()}
	cmd := exec.Command(path, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = g.Workspace(), vars, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // a grandchild holding the output must not hold us
	if _, err := sandbox.Start(cmd, sb); err != nil {
		var ue *sandbox.UnavailableError
		if errors.As(err, &ue) {
			return "", ue
		}
		return "", fmt.Errorf("cannot run %s: %v", command, errors.Unwrap(err))
	}
	pgid := cmd.Process.Pid
	start, _ := proc.StartTime(pgid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	var stopped string
	select {
	case err = <-done:
	case <-timer.C:
		stopped = fmt.Sprintf("killed after the %s timeout", timeout)
	case <-ctx.Done():
		stopped = "killed: the agent stopped"
	}
	syscall.Kill(-pgid, syscall.SIGKILL)  // the group, grandchildren included
	proc.KillTagged(callTag, pgid, start) // and what left it
	if stopped != "" {
		<-done
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return stopped + "\n" + out.String(), nil
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	status := fmt.Sprintf("exit code %d", code)
	if why := sandbox.LimitReason(cmd.ProcessState, sb.Limits, out.tail()); why != "" {
		status += " (" + why + ")"
	}
	return status + "\n" + out.String(), nil
}

// sandboxPath is the daemon's PATH without what the sandbox cannot read.
func sandboxPath(sb sandbox.Policy) string { return sb.Path(os.Getenv("PATH")) }

// httpFetch fetches an allowed URL; redirects are checked against the
// policy too.
func httpFetch(ctx context.Context, g *Gate, rawURL, method, body string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("url must be an absolute http or https URL (got %q)", rawURL)
	}
	if err := g.Host(u); err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("url must be an absolute http or https URL (got %q)", rawURL)
	}
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), u.String(), strings.NewReader(body))
	if err != nil {
		return "", err
	}
	client := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return g.Host(r.URL)
	}}
	resp, err := client.Do(req)
	if err != nil {
		var d *Denied
		if errors.As(err, &d) {
			return "", d
		}
		return "", err
	}
	defer resp.Body.Close()
	out := &capped{max: maxRead}
	io.Copy(out, resp.Body)
	return fmt.Sprintf("HTTP %d %s\ncontent-type: %s\n\n%s", resp.StatusCode, http.StatusText(resp.StatusCode), resp.Header.Get("Content-Type"), out.String()), nil
}
