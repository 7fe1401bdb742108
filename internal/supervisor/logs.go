package supervisor

import (
	"context"
	"time"

	"github.com/oxios/oxios/internal/logfile"
)

// LogTail returns the last n lines of agent id's log, and the cursor after
// them to read on from. Another node's agent's log is read on its node.
func (s *Supervisor) LogTail(ctx context.Context, id string, n int) ([]string, logfile.Cursor, error) {
	if _, err := s.get(id); err != nil {
		r, err := s.owner(id)
		if err != nil {
			return nil, logfile.Cursor{}, err
		}
		rp, err := s.forward(ctx, r.Node, request{Op: "tail", ID: id, Lines: n}, forwardTimeout)
		return rp.Lines, rp.Cursor, err
	}
	path := s.LogPath(id)
	lines, err := logfile.Tail(path, n)
	if err != nil {
		return nil, logfile.Cursor{}, err
	}
	// A reply to another node must fit in one message: the oldest lines
	// go first.
	size := 0
	for i := len(lines) - 1; i >= 0; i-- {
		if size += len(lines[i]) + 1; size > maxLogReply {
			lines = lines[i+1:]
			break
		}
	}
	return lines, logfile.End(path), nil
}

// logPoll is how often a read that waits looks for more.
const logPoll = 100 * time.Millisecond

// LogRead reads agent id's log from c, waiting up to wait for more when
// there is none yet. ended reports that the agent has ended and its log
// has been read to its end. Another node's agent's log is read on its
// node.
func (s *Supervisor) LogRead(ctx context.Context, id string, c logfile.Cursor, wait time.Duration) (data []byte, next logfile.Cursor, ended bool, err error) {
	a, err := s.get(id)
	if err != nil {
		r, err := s.owner(id)
		if err != nil {
			return nil, c, false, err
		}
		rp, err := s.forward(ctx, r.Node, request{Op: "read", ID: id, Cursor: c, Wait: wait}, wait+forwardTimeout)
		return rp.Data, rp.Cursor, rp.Ended, err
	}
	path := s.LogPath(id)
	deadline := time.Now().Add(wait)
	for {
		// Whether it had ended is looked at before the read: a read after
		// the end has all there will be.
		done := a.snap.Load().State.Terminal()
		data, next, err = logfile.ReadAt(path, c, maxLogReply)
		if err != nil || len(data) > 0 {
			return data, next, false, err
		}
		if done {
			return nil, next, true, nil
		}
		if !time.Now().Before(deadline) {
			return nil, next, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, next, false, nil
		case <-time.After(logPoll):
		}
	}
}
