package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// headSig signs a head's sequence and MAC.
func (l *Log) headSig(seq uint64, mac string) string {
	h := hmac.New(sha256.New, l.key)
	fmt.Fprintf(h, "oxios audit head\x00%d\x00%s", seq, mac)
	return hex.EncodeToString(h.Sum(nil))
}

// readHead returns the signed head, errNoHead or errBadHead.
func (l *Log) readHead(ctx context.Context) (Head, error) {
	var h Head
	e, err := l.heads.Get(ctx, headKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		l.headRev = 0
		return h, errNoHead
	}
	if err != nil {
		return h, fmt.Errorf("read the audit trail's head: %w", err)
	}
	l.headRev = e.Revision()
	if json.Unmarshal(e.Value(), &h) != nil || !hmac.Equal([]byte(h.Sig), []byte(l.headSig(h.Seq, h.MAC))) {
		return h, errBadHead
	}
	return h, nil
}

// putHead moves the signed head to (seq, mac): forward only, unless force,
// and by compare-and-set, so that several writers on one trail (a
// cluster) never move it back.
func (l *Log) putHead(ctx context.Context, seq uint64, mac string, force bool) error {
	b, _ := json.Marshal(Head{Seq: seq, MAC: mac, Sig: l.headSig(seq, mac)})
	for attempt := 0; attempt < 100; attempt++ {
		var rev uint64
		var err error
		if l.headRev == 0 {
			rev, err = l.heads.Create(ctx, headKey, b)
		} else {
			rev, err = l.heads.Update(ctx, headKey, b, l.headRev)
		}
		if err == nil {
			l.headRev = rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("write the audit trail's head: %w", err)
		}
		cur, rerr := l.readHead(ctx)
		if rerr != nil && !errors.Is(rerr, errNoHead) && !errors.Is(rerr, errBadHead) {
			return rerr
		}
		if rerr == nil && cur.Seq >= seq && !force {
			return nil // another writer has signed a newer entry
		}
	}
	return errors.New("write the audit trail's head: too many concurrent writers")
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// entryAt reads the entry at seq; errUnreadable if it is gone or garbled.
func (l *Log) entryAt(ctx context.Context, seq uint64) (Entry, error) {
	var e Entry
	m, err := l.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return e, errUnreadable
	}
	if err != nil {
		return e, fmt.Errorf("read audit entry %d: %w", seq, err)
	}
	if json.Unmarshal(m.Data, &e) != nil {
		return e, errUnreadable
	}
	return e, nil
}
