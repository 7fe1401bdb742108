// Package proc runs OS processes for agents: each in its own process group,
// with exactly the environment it is given, its stdout and stderr captured
// into one size-rotated log file, and stopped as a group (SIGTERM, then
// SIGKILL after a grace period) so that grandchildren never outlive it;
// whatever is left in the group when the process exits is killed too.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oxios/oxios/internal/logfile"
	"github.com/oxios/oxios/internal/sandbox"
)

// Spec says what to run.
type Spec struct {
	Command string
	Args    []string
	// Env is the whole environment of the process; nothing is inherited.
	Env []string
	Dir string
	// LogPath receives stdout and stderr, rotated at LogMaxSize bytes with
	// LogMaxFiles old files kept.
	LogPath     string
	LogMaxSize  int64
	LogMaxFiles int
	// Sandbox confines the process (see internal/sandbox); nil: none.
	Sandbox *sandbox.Policy
	// Tag is an entry of Env ("OXIOS_AGENT_ID=<id>"): when the process
	// exits, what carries it and left the group is killed too.
	Tag string
}

// Exit is how a process ended: an exit code, or the signal that killed it.
type Exit struct {
	Code   *int   `json:"exit_code"`
	Signal string `json:"signal,omitempty"`
	// Limit names the sandbox limit the process ran into, if any.
	Limit string `json:"-"`
}

// Success reports a zero exit code.
func (e Exit) Success() bool { return e.Code != nil && *e.Code == 0 }

func (e Exit) String() string {
	if e.Code != nil {
		return fmt.Sprintf("exit status %d", *e.Code)
	}
	return "killed by signal " + e.Signal
}

// Process is a started process.
type Process struct {
	// PID is the process id, which is also its process group id.
	PID int
	// StartTime identifies this process among all that will ever have PID:
	// the kernel's start time of the process (see StartTime).
	StartTime uint64
	// Sandbox is the sandbox the process got.
	Sandbox sandbox.Effective

	cmd    *exec.Cmd
	done   chan struct{}
	exit   Exit
	copied chan struct{}
	log    *logfile.File
	limits sandbox.Limits
	tag    string
	tail   tailBuffer // the end of the output, for LimitReason
	// overLimit is set when the process group reached its process limit.
	overLimit atomic.Bool
	stopWatch func()
}

// Start starts the process in a new process group.
func Start(s Spec) (*Process, error) {
	if s.LogMaxSize <= 0 {
		s.LogMaxSize = 10 << 20
	}
	log, err := logfile.Open(s.LogPath, logfile.Options{MaxSize: s.LogMaxSize, MaxFiles: s.LogMaxFiles})
	if err != nil {
		return nil, fmt.Errorf("open agent log: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	cmd := exec.Command(s.Command, s.Args...)
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean "inherit the daemon's"
	}
	cmd.Dir = s.Dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: lines interleave, never clobber
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var eff sandbox.Effective
	if s.Sandbox != nil {
		eff, err = sandbox.Start(cmd, *s.Sandbox)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		pr.Close()
		pw.Close()
		log.Close()
		return nil, err
	}
	pw.Close() // the child has its copy
	p := &Process{PID: cmd.Process.Pid, Sandbox: eff, cmd: cmd, done: make(chan struct{}), copied: make(chan struct{}), log: log, limits: eff.Limits, tag: s.Tag}
	p.StartTime, _ = StartTime(p.PID)
	p.stopWatch = func() {}
	if n := eff.Limits.Processes; n > 0 {
		p.stopWatch = watchGroup(p.PID, n, func() {
			p.overLimit.Store(true)
			syscall.Kill(-p.PID, syscall.SIGKILL)
		})
	}
	go func() {
		defer close(p.copied)
		// A small buffer: a thousand agents must not cost 32 MB of copy
		// buffers. The wrappers keep io from choosing its own.
		buf := make([]byte, 4<<10)
		w := io.Writer(log)
		if p.limits.MemoryMB > 0 {
			w = io.MultiWriter(log, &p.tail)
		}
		io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{pr}, buf) // ends when every holder of the pipe has exited
		pr.Close()
	}()
	go p.wait()
	return p, nil
}

func (p *Process) wait() {
	awaitExit(p.PID) // then Wait reaps at once
	err := p.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		code := 0
		p.exit.Code = &code
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.exit.Signal = unix.SignalName(ws.Signal())
		} else {
			code := ee.ExitCode()
			p.exit.Code = &code
		}
	default:
		code := -1
		p.exit.Code = &code
	}
	// What the process left in its group dies with it, so no orphan outlives
	// its agent. The group id cannot have been reused: members still hold it.
	syscall.Kill(-p.PID, syscall.SIGKILL)
	if p.tag != "" {
		KillTagged(p.tag, p.PID, p.StartTime)
	}
	p.stopWatch()
	if p.overLimit.Load() {
		p.exit.Limit = sandbox.ProcessLimitReason(p.limits.Processes)
	} else {
		// The last output is still in the pipe: what it said decides a
		// memory limit, so wait a little for it (the group is dead).
		if p.limits.MemoryMB > 0 && !p.exit.Success() {
			select {
			case <-p.copied:
			case <-time.After(200 * time.Millisecond):
			}
		}
		p.exit.Limit = sandbox.LimitReason(p.cmd.ProcessState, p.limits, p.tail.bytes())
	}
	go func() { <-p.copied; p.log.Close() }()
	close(p.done)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit, or for ctx.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Stop sends sig to the whole process group, waits up to grace for the
// process to exit, then sends SIGKILL to the group. It reports whether
// SIGKILL was needed. When the process exits, what is left of its group is
// killed (see wait), so no grandchild survives it. A process that has
// already exited is not signalled: its group id may no longer be its own.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	syscall.Kill(-p.PID, sig)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	syscall.Kill(-p.PID, syscall.SIGKILL)
	<-p.done
	return true
}

// Exit is how the process ended; it is valid once Done is closed.
func (p *Process) Exit() Exit {
	<-p.done
	return p.exit
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 8<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4<<10:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}
