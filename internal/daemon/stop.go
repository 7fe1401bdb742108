package daemon

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// StopResult describes what Stop did.
type StopResult struct {
	// WasRunning is false when no daemon was running.
	WasRunning bool
	PID        int
	// Killed is true when the daemon ignored SIGTERM for the whole timeout
	// and was sent SIGKILL.
	Killed bool
	// StaleRemoved is true when only a stale PID file was found and removed.
	StaleRemoved bool
}

// Stop stops the daemon holding the PID file at path: SIGTERM, a wait of up
// to timeout for it to exit (its lock to be released), then SIGKILL. It
// returns once the daemon is gone. The PID file is removed only when no
// process holds it any more.
func Stop(ctx context.Context, path string, timeout time.Duration) (StopResult, error) {
	var res StopResult
	st, err := ReadStatus(path)
	if err != nil {
		return res, err
	}
	switch st.State {
	case Stopped:
		return res, nil
	case Stale:
		pid, removed, err := RemoveStale(path)
		res.PID, res.StaleRemoved = pid, removed
		return res, err
	}
	res.WasRunning, res.PID = true, st.PID
	if st.PID <= 0 {
		return res, fmt.Errorf("PID file %s is locked but holds no PID; cannot signal the daemon", path)
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return res, fmt.Errorf("signal PID %d: %w", st.PID, err)
	}
	if gone, err := waitReleased(ctx, path, timeout); err != nil {
		return res, err
	} else if gone {
		// A daemon that died of the signal without cleaning up leaves a stale file.
		_, _, err := RemoveStale(path)
		return res, err
	}
	// Check again that the same daemon still holds the lock before SIGKILL.
	if again, err := ReadStatus(path); err != nil || again.State != Running || again.PID != st.PID {
		_, _, rerr := RemoveStale(path)
		return res, errors.Join(err, rerr)
	}
	res.Killed = true
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return res, fmt.Errorf("kill PID %d: %w", st.PID, err)
	}
	gone, err := waitReleased(ctx, path, 5*time.Second)
	if err != nil {
		return res, err
	}
	if !gone {
		return res, fmt.Errorf("PID %d survived SIGKILL; PID file kept", st.PID)
	}
	_, _, err = RemoveStale(path)
	return res, err
}

// waitReleased polls until no process holds the PID file lock.
func waitReleased(ctx context.Context, path string, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := ReadStatus(path)
		if err != nil {
			return false, err
		}
		if st.State != Running {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
