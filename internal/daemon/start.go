package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/logfile"
)

// StartOptions say how to start a detached daemon.
type StartOptions struct {
	// Exe and Args are the command that runs the daemon in the foreground
	// (this binary with "start --foreground ...").
	Exe  string
	Args []string
	// PIDPath and LogPath are the daemon's PID file and log file.
	PIDPath string
	LogPath string
	// Listen is the address the daemon will serve on.
	Listen string
	// Listener, if set, is a listening socket on Listen handed to the
	// daemon (as file descriptor 3, ListenFDEnv) instead of an address it
	// binds.
	Listener *os.File
	// ReadyTimeout bounds the wait for /readyz to answer 200.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait for a daemon that failed to start to exit
	// after SIGTERM, before SIGKILL.
	StopTimeout time.Duration
	// Progress, if set, is called about every 100 ms while waiting.
	Progress func(elapsed time.Duration)
}

// Started describes a daemon that started and became ready.
type Started struct {
	PID int
	// StalePID is the PID of a dead daemon whose stale PID file was removed, or 0.
	StalePID int
}

// StartError is a failed start. The daemon it started, if any, has been
// terminated. LogTail holds the last lines the daemon wrote during this start.
type StartError struct {
	Reason  string
	LogTail []string
}

func (e *StartError) Error() string { return e.Reason }

// AddrInUseError says the listen address is held by another program.
type AddrInUseError struct{ Addr string }

func (e *AddrInUseError) Error() string {
	_, port, _ := net.SplitHostPort(e.Addr)
	return fmt.Sprintf("cannot start: %s is already in use by another program "+
		"(find it with: ss -ltnp 'sport = :%s' or lsof -nP -iTCP:%s -sTCP:LISTEN); "+
		"stop it, or choose another address with --listen or api.listen in config.toml",
		e.Addr, port, port)
}

// CheckListen reports whether the address can be bound right now.
func CheckListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &AddrInUseError{Addr: addr}
		}
		return fmt.Errorf("cannot start: cannot listen on %s: %w", addr, unwrapOp(err))
	}
	return ln.Close()
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err
		}
		return op.Err
	}
	return err
}

// Start starts the daemon detached from the caller: in a new session, with
// stdin from /dev/null and stdout and stderr appended to the log file
// (opened once and shared, so the two streams never clobber each other).
// It waits until the daemon answers /readyz with 200. If the daemon exits,
// or is not ready in time, Start terminates it and returns *StartError with
// the log lines it wrote.
func Start(ctx context.Context, o StartOptions) (Started, error) {
	var res Started
	st, err := ReadStatus(o.PIDPath)
	if err != nil {
		return res, err
	}
	switch st.State {
	case Running:
		return res, &RunningError{PID: st.PID, Restore: st.Listen == "restore"}
	case Stale:
		if pid, removed, err := RemoveStale(o.PIDPath); err != nil {
			return res, err
		} else if removed {
			res.StalePID = pid
		}
	}
	if o.Listener == nil {
		if err := CheckListen(o.Listen); err != nil {
			return res, err
		}
	}

	logf, err := os.OpenFile(o.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return res, fmt.Errorf("open log: %w", err)
	}
	fi, err := logf.Stat()
	if err != nil {
		logf.Close()
		return res, fmt.Errorf("open log: %w", err)
	}
	logStart := fi.Size()

	closeInheritedOnExec()
	cmd := exec.Command(o.Exe, o.Args...)
	cmd.Env = daemonEnv()
	if o.Listener != nil {
		cmd.ExtraFiles = []*os.File{o.Listener} // descriptor 3
		cmd.Env = append(cmd.Env, ListenFDEnv+"=3")
	}
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return res, fmt.Errorf("start daemon: %w", err)
	}
	res.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	fail := func(reason string) (Started, error) {
		terminate(cmd.Process.Pid, exited, o.StopTimeout)
		tail, _ := logfile.TailFrom(o.LogPath, logStart, 30)
		return res, &StartError{Reason: reason, LogTail: tail}
	}

	url := "http://" + dialAddr(o.Listen) + "/readyz"
	hc := &http.Client{Timeout: time.Second}
	start := time.Now()
	deadline := time.NewTimer(o.ReadyTimeout)
	defer deadline.Stop()
	delay := time.Millisecond
	lastProgress := time.Time{}
	for {
		if ok, _ := probeReady(ctx, hc, url, res.PID); ok {
			return res, nil
		}
		if o.Progress != nil && time.Since(lastProgress) >= 100*time.Millisecond {
			o.Progress(time.Since(start))
			lastProgress = time.Now()
		}
		select {
		case err := <-exited:
			exited <- err // terminate() reads it again
			// Lost a race with another start: say so plainly.
			if st, serr := ReadStatus(o.PIDPath); serr == nil && st.State == Running && st.PID != res.PID {
				return res, &RunningError{PID: st.PID}
			}
			return fail(fmt.Sprintf("daemon (PID %d) exited before it was ready: %v", res.PID, exitText(err)))
		case <-deadline.C:
			return fail(fmt.Sprintf("daemon (PID %d) was not ready within %s (daemon.ready_timeout); stopped it", res.PID, o.ReadyTimeout))
		case <-ctx.Done():
			return fail(fmt.Sprintf("start interrupted; stopped the daemon (PID %d)", res.PID))
		case <-time.After(delay):
		}
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

// daemonEnv is the environment of a daemon started by Start: the caller's,
// without the variables that only address a daemon from a client (the
// token must not sit in the daemon's environment for its whole life).
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OXIOS_TOKEN=") || strings.HasPrefix(kv, "OXIOS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Ready is the body of /readyz.
type Ready struct {
	Ready    bool     `json:"ready"`
	PID      int      `json:"pid"`
	NotReady []string `json:"not_ready,omitempty"`
}

// probeReady asks url for readiness and checks that the daemon answering is
// the one with the given PID, not some other program on the address.
func probeReady(ctx context.Context, hc *http.Client, url string, pid int) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var r Ready
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK && r.Ready && r.PID == pid, nil
}

// terminate stops a daemon this process started: SIGTERM to its process
// group, then SIGKILL after timeout. exited delivers its Wait result.
func terminate(pid int, exited chan error, timeout time.Duration) {
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(timeout):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
}

// dialAddr turns a listen address into one a client can dial: an
// unspecified host (all interfaces) is reached through loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// URL is the base URL at which clients reach a daemon listening on listen.
func URL(listen string) string { return "http://" + dialAddr(listen) }
