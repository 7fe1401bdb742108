package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// Filter selects entries in List.
type Filter struct {
	Actor  string
	Action string // exact, or a prefix followed by '*' ("agent.*")
	Since  time.Time
	// After lists entries after this sequence.
	After uint64
	Limit int
}

func (f Filter) match(e Entry) bool {
	if f.Actor != "" && e.Actor != f.Actor {
		return false
	}
	if f.Action != "" {
		if p, ok := strings.CutSuffix(f.Action, "*"); ok {
			if !strings.HasPrefix(e.Action, p) {
				return false
			}
		} else if e.Action != f.Action {
			return false
		}
	}
	return f.Since.IsZero() || !e.Time.Before(f.Since)
}

// List returns the entries that match f, oldest first, at most f.Limit.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []Entry
	if f.After == ^uint64(0) {
		return nil, nil
	}
	_, err := l.each(ctx, f.After+1, func(_ uint64, e Entry, _ []byte) bool {
		if f.match(e) {
			out = append(out, e)
		}
		return len(out) < f.Limit
	})
	return out, err
}

// each calls fn with every entry from sequence from (and its sequence in
// the stream), in order, until fn returns false. It returns the sequence
// of the stream's last entry when it began: entries up to it that could
// not be read were not passed to fn.
func (l *Log) each(ctx context.Context, from uint64, fn func(seq uint64, e Entry, raw []byte) bool) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	last := info.State.LastSeq
	if from < 1 {
		from = 1
	}
	if from > last || info.State.Msgs == 0 {
		return last, nil
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return last, err
	}
	unanswered := 0
	for next := from; ; {
		// What is stored, at once: a batch that stops short leaves no
		// fetch waiting behind it, and entries the index counts but the
		// store lost are not waited for.
		batch, err := fetchNow(ctx, cons, int(min(500, last-next+1)))
		if err != nil {
			return last, err
		}
		n := 0
		msgs := batch.Messages()
		for {
			var m jetstream.Msg
			var ok bool
			select {
			case m, ok = <-msgs:
			case <-time.After(fetchStall):
				// The server that holds the consumer went away (a node of
				// the cluster died): the fetch is never answered.
				return last, fmt.Errorf("the audit stream stopped answering for %s: %w", fetchStall, oxios.ErrUnreachable)
			case <-ctx.Done():
				return last, ctx.Err()
			}
			if !ok {
				break
			}
			n++
			md, err := m.Metadata()
			if err != nil {
				return last, err
			}
			var e Entry
			if json.Unmarshal(m.Data(), &e) != nil {
				e = Entry{Seq: md.Sequence.Stream, Action: "(unreadable)"}
			}
			next = md.Sequence.Stream + 1
			if !fn(md.Sequence.Stream, e, m.Data()) || md.Sequence.Stream >= last {
				return last, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			if n == 0 && errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil && unanswered < 100 {
				unanswered++
				time.Sleep(20 * time.Millisecond) // not reached yet (see fetchNow)
				continue
			}
			return last, err
		}
		if n == 0 {
			return last, nil
		}
	}
}

// fetchStall bounds the wait for a batch that was asked for.
const fetchStall = 10 * time.Second

// fetchNow is FetchNoWait, asked again while nobody answers: on a
// cluster, a consumer just made on another node's server is not reached
// at once.
func fetchNow(ctx context.Context, cons jetstream.Consumer, n int) (jetstream.MessageBatch, error) {
	for wait, tries := 5*time.Millisecond, 0; ; wait, tries = min(2*wait, 200*time.Millisecond), tries+1 {
		batch, err := cons.FetchNoWait(n)
		if err == nil || !errors.Is(err, nats.ErrNoResponders) || tries == 20 {
			return batch, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// Verdict is the result of Verify.
type Verdict = oxios.AuditVerdict

// Verify walks the whole chain and compares its end with the signed head.
// It names the first entry whose sequence, link to the previous entry or
// MAC is wrong, counts what is missing, and goes on past each break from
// the next entry that is signed, so that damage noted by the daemon
// (DamagedAction) and what was appended after it are told apart.
func (l *Log) Verify(ctx context.Context) (Verdict, error) {
	var v Verdict
	head, headErr := l.readHead(ctx) // before the stream: never ahead of it
	if headErr != nil && !errors.Is(headErr, errNoHead) && !errors.Is(headErr, errBadHead) {
		return v, headErr
	}
	broken := func(seq, missing uint64, why string) {
		if v.FirstBroken == 0 {
			v.FirstBroken, v.Reason = seq, why
		}
		v.Missing += missing
		v.Damage = append(v.Damage, fmt.Sprintf("entry %d: %s", seq, why))
	}
	expect, prev, resync := uint64(1), "", false
	headMAC := ""
	last, err := l.each(ctx, 1, func(seq uint64, e Entry, raw []byte) bool {
		v.Entries++
		if seq > expect {
			if expect == seq-1 {
				broken(expect, 1, fmt.Sprintf("entry %d is missing", expect))
			} else {
				broken(expect, seq-expect, fmt.Sprintf("entries %d to %d are missing", expect, seq-1))
			}
			resync = true
		}
		expect = seq + 1
		var why string
		switch {
		case e.Action == "(unreadable)":
			why = "the entry is not valid JSON"
		case !hmac.Equal([]byte(l.mac(e)), []byte(e.MAC)):
			why = "its MAC does not match its content (it was changed)"
		case !bytes.Equal(canonical(raw), canonical(mustJSON(e))):
			why = "it holds data outside the signed fields"
		case e.Seq != seq:
			why = fmt.Sprintf("it says sequence %d but is stored at %d (an entry is missing or out of place)", e.Seq, seq)
		case e.Prev != prev && !resync:
			why = "its link to the previous entry does not match"
		}
		if why != "" {
			broken(seq, 0, why)
			resync = true
			return true
		}
		if e.Action == DamagedAction {
			lost, _ := e.Detail["lost"].(float64)
			reason, _ := e.Detail["reason"].(string)
			broken(seq, uint64(lost), "the daemon found the trail damaged and noted it here: "+reason)
		}
		if seq == head.Seq {
			headMAC = e.MAC
		}
		prev, resync = e.MAC, false
		return true
	})
	if err != nil {
		return v, err
	}
	if expect <= last {
		broken(expect, last-expect+1, fmt.Sprintf("entries %d to %d cannot be read", expect, last))
		expect = last + 1
	}
	switch {
	case errors.Is(headErr, errBadHead):
		broken(expect, 0, "the signed head does not verify (it was changed)")
	case errors.Is(headErr, errNoHead):
		if v.Entries > 0 {
			broken(expect, 0, "the signed head is missing")
		}
	default:
		v.Head = head.Seq
		if head.Seq >= expect {
			n := head.Seq - expect + 1
			broken(expect, n, fmt.Sprintf("%d entries are missing at the end: the chain ends at %d, its signed head is at %d", n, expect-1, head.Seq))
		} else if headMAC != head.MAC && head.Seq > 0 {
			broken(head.Seq, 0, "it is not the entry the signed head names")
		}
	}
	v.OK = v.FirstBroken == 0
	return v, nil
}
