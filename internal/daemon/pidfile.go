// Package daemon owns the daemon's life as the operating system sees it:
// the flock-held PID file, starting a detached daemon and waiting for it to
// be ready, stopping it, signals, and systemd notification.
package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// State is what the PID file says about the daemon.
type State string

// The three states of the PID file. Running means the daemon holds the lock;
// a recycled PID can never pass for the daemon because the PID is only
// trusted while the lock is held.
const (
	Stopped State = "stopped" // no PID file
	Running State = "running" // PID file present and flock held
	Stale   State = "stale"   // PID file present, nobody holds the lock
)

// Status is the daemon's state as read from the PID file.
type Status struct {
	State State
	// PID is the daemon's process id (Running), or the id the dead daemon
	// had (Stale). It is 0 when the file could not be parsed.
	PID int
	// Listen is the address the daemon serves on, as it wrote it.
	Listen string
	// Since is when the PID file was written, i.e. when the daemon started.
	Since time.Time
}

// RunningError is returned when a daemon already holds the PID file.
type RunningError struct {
	PID int
	// Restore is set when the holder is `oxios restore`, not a daemon.
	Restore bool
}

func (e *RunningError) Error() string {
	if e.Restore {
		return fmt.Sprintf("a restore is running (PID %d); start once it has finished", e.PID)
	}
	if e.PID == 0 {
		return "already running"
	}
	return fmt.Sprintf("already running (PID %d)", e.PID)
}

// PIDFile is the PID file held by the running daemon. The lock lives as long
// as the open file description, so it disappears with the process however
// the process ends; the file is closed on exec, so children never hold it.
type PIDFile struct {
	path string

	mu sync.Mutex
	f  *os.File // nil once released
}

// lockRetries covers the moment in which a status reader holds a shared
// lock: such a reader lets go within microseconds.
const lockRetries = 5

// exitWait is how long Acquire waits for a killed daemon to finish exiting.
const exitWait = oxios.ExitWait

// exiting reports whether pid has exited as far as its main thread goes
// (a zombie, or dead), while the rest of it may still be going.
func exiting(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false // gone, or not Linux: the lock says the rest
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// Acquire creates or takes over the PID file at path, locks it exclusively,
// and writes the current PID and listen address into it. A stale file left
// by a killed daemon is taken over. If another daemon holds the lock it
// returns *RunningError.
func Acquire(path, listen string) (*PIDFile, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open PID file: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := parse(f)
			f.Close()
			// A daemon killed a moment ago holds the lock until its last
			// thread has exited (one in an fsync takes a while), though
			// its main thread is already a zombie: wait for it, up to
			// exitWait, rather than report it running.
			if attempt < lockRetries || (exiting(pid) && attempt < lockRetries+int(exitWait/(10*time.Millisecond))) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, &RunningError{PID: pid}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock PID file: %w", err)
		}
		// Between our open and our lock another process may have removed
		// the file (a stale cleanup or an exiting daemon). Our lock would
		// then be on an inode nobody else can find; try again.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		content := fmt.Sprintf("%d\n%s\n", os.Getpid(), listen)
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("write PID file: %w", err)
		}
		if _, err := f.WriteAt([]byte(content), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("write PID file: %w", err)
		}
		return &PIDFile{path: path, f: f}, nil
	}
}

// Release removes the PID file and then drops the lock. It is the last
// thing the daemon does on a graceful exit.
// Releasing twice does nothing the second time.
func (p *PIDFile) Release() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	err := os.Remove(p.path)
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	return err
}

// ReadStatus tells whether a daemon holds the PID file at path.
//
// Besides the daemon, two short-lived holders of the exclusive lock exist:
// a start cleaning up a stale file, and a daemon between taking the lock and
// writing its PID. In both the file still names an old PID, which must
// never be reported (and then signalled) as the daemon. Where the system
// says who holds a lock (Linux /proc/locks), the PID is only reported once
// it is the holder's; elsewhere the file must at least be non-empty.
func ReadStatus(path string) (Status, error) {
	dying := time.Now().Add(exitWait)
	for attempt := 0; ; attempt++ {
		st, dev, ino, err := readOnce(path)
		if err != nil || st.State != Running {
			return st, err
		}
		// A daemon killed a moment ago is not running, though its lock
		// lasts until its last thread has exited: wait for that.
		if exiting(st.PID) && time.Now().Before(dying) {
			time.Sleep(10 * time.Millisecond)
			attempt--
			continue
		}
		holder, known := lockHolder(dev, ino)
		if st.PID != 0 && (!known || holder == st.PID) {
			return st, nil
		}
		if attempt >= 40 {
			return Status{}, fmt.Errorf("PID file %s is locked by PID %d but names PID %d; it is being updated, try again", path, holder, st.PID)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readOnce(path string) (st Status, dev, ino uint64, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Status{State: Stopped}, 0, 0, nil
	}
	if err != nil {
		return Status{}, 0, 0, fmt.Errorf("open PID file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		st.Since = fi.ModTime()
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			dev, ino = uint64(sys.Dev), uint64(sys.Ino)
		}
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		st.State = Running
	case err != nil:
		return Status{}, 0, 0, fmt.Errorf("lock PID file: %w", err)
	default:
		st.State = Stale
	}
	st.PID, st.Listen = parse(f)
	return st, dev, ino, nil
}

// RemoveStale removes the PID file at path if no daemon holds it, and
// returns the PID the dead daemon had. It never removes a held file.
func RemoveStale(path string) (pid int, removed bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("open PID file: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("lock PID file: %w", err)
	}
	if !samePath(f, path) {
		return 0, false, nil
	}
	pid, _ = parse(f)
	if err := os.Remove(path); err != nil {
		return pid, false, fmt.Errorf("remove stale PID file: %w", err)
	}
	return pid, true, nil
}

func parse(f *os.File) (pid int, listen string) {
	buf := make([]byte, 512)
	n, _ := f.ReadAt(buf, 0)
	lines := strings.Split(string(buf[:n]), "\n")
	pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 1 {
		listen = strings.TrimSpace(lines[1])
	}
	return pid, listen
}

// samePath reports whether the open file f is still the file at path.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}
