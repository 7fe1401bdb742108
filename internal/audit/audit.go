// Package audit keeps the tamper-evident audit trail: every entry is
// chained to the one before by an HMAC-SHA256 under a key kept in the
// secrets directory, stored in a stream that refuses deletes and purges,
// and appended with an expected last sequence so the chain cannot fork.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// Stream is the JetStream stream of the audit trail.
const Stream = "OXIOS_AUDIT"

// HeadBucket holds the trail's signed head: the sequence and MAC of its
// newest entry, signed with the audit key, outside the stream. Verify
// compares the chain with it, so a tail cut from the stream is reported
// with how many entries are missing.
const HeadBucket = "audit_head"

const headKey = "head"

// DamagedAction is the entry a daemon appends when it opens a trail that
// is damaged (its tail cut, its last entry unreadable): what it found, and
// where the chain goes on from.
const DamagedAction = "audit.damaged"

// HeadCreatedAction is the entry a daemon appends when it signs the head
// of a trail that had none (one from before signed heads).
const HeadCreatedAction = "audit.head_created"

const subject = "oxios.audit"

// Entry is one audited action.
type Entry = oxios.AuditEntry

// Head is the signed head of the trail.
type Head struct {
	Seq uint64 `json:"seq"`
	MAC string `json:"mac"`
	Sig string `json:"sig"`
}

// Log is the audit trail.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	heads  jetstream.KeyValue
	key    []byte
	node   string

	mu      sync.Mutex // serializes appends from this process
	lastSeq uint64
	lastMAC string
	headRev uint64 // revision of the head last read or written
	// damage is what Open found wrong with the trail ("" if nothing).
	damage string
}

// Options configure the audit trail.
type Options struct {
	// KeyPath is the key of the chain (created, 0600, on first use). Every
	// writer of one trail must have the same key: a cluster's nodes use the
	// cluster key.
	KeyPath  string
	Replicas int
	// Node is written in every entry this daemon appends.
	Node string
}

// ErrOtherKey is a trail whose entries were signed with another key than
// the one this daemon has: it refuses to append to it rather than break
// the chain for good.
var ErrOtherKey = errors.New("the audit trail is signed with another key")

// Open creates or opens the audit stream.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Log, error) {
	key, err := loadKey(o.KeyPath)
	if err != nil {
		return nil, err
	}
	replicas := max(o.Replicas, 1)
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       Stream,
		Subjects:   []string{subject},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w", err)
	}
	heads, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   HeadBucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", HeadBucket, err)
	}
	l := &Log{js: js, stream: st, heads: heads, key: key, node: o.Node}
	if err := l.open(ctx); err != nil {
		if errors.Is(err, ErrOtherKey) {
			return nil, fmt.Errorf("%w than this node's %s: every node of a cluster must have the same secrets/cluster.key (copy the first node's); nothing was appended", err, o.KeyPath)
		}
		return nil, err
	}
	return l, nil
}

// Damage is what Open found wrong with the trail, or "": a tail missing
// against the signed head, an unreadable last entry, a head that does not
// verify. The daemon runs on; the damage is noted in the trail
// (DamagedAction) and reported by readiness, doctor and Verify.
func (l *Log) Damage() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.damage
}

// open reads the end of the chain and its signed head, and checks the
// one against the other. A damaged trail is noted, not refused: the
// daemon's other parts must not be lost with it.
func (l *Log) open(ctx context.Context) error {
	// The head first: it is written after its entry, so it is never ahead
	// of a stream read after it, even with other writers.
	head, headErr := l.readHead(ctx)
	if headErr != nil && !errors.Is(headErr, errNoHead) && !errors.Is(headErr, errBadHead) {
		return headErr
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	l.lastSeq, l.lastMAC = last, ""
	var why []string
	lost := uint64(0)
	if info.State.Msgs > 0 {
		e, err := l.entryAt(ctx, last)
		switch {
		case err == nil && headErr != nil && !hmac.Equal([]byte(l.mac(e)), []byte(e.MAC)):
			// Neither the head nor the last entry verifies: another key,
			// not damage (damage leaves one of them intact).
			return ErrOtherKey
		case err == nil:
			l.lastMAC = e.MAC
		case errors.Is(err, errUnreadable):
			why = append(why, fmt.Sprintf("its last entry (%d) cannot be read", last))
			if headErr == nil && head.Seq == last {
				l.lastMAC = head.MAC // the chain goes on from what the head signed
			}
		default:
			return err
		}
	}
	switch {
	case errors.Is(headErr, errBadHead):
		why = append(why, "its signed head does not verify (it was changed)")
	case errors.Is(headErr, errNoHead):
		if last > 0 && len(why) == 0 {
			// A trail from before signed heads: sign what is there, and
			// say so in the trail (the head cannot vouch for its past).
			if _, err := l.append(ctx, Entry{Actor: "oxios", Action: HeadCreatedAction, Resource: "audit", Outcome: "ok",
				Detail: map[string]any{"stream_last": last}}, true); err != nil {
				return fmt.Errorf("sign the audit trail's head: %w", err)
			}
		}
	case head.Seq > last:
		lost = head.Seq - last
		why = append(why, fmt.Sprintf("%d entries are missing at its end: the stream ends at %d, its signed head is at %d", lost, last, head.Seq))
	case head.Seq > 0:
		if e, err := l.entryAt(ctx, head.Seq); err == nil && e.MAC != head.MAC {
			why = append(why, fmt.Sprintf("its entry %d is not the one its signed head names", head.Seq))
		}
	}
	if len(why) == 0 {
		return nil
	}
	l.damage = "the audit trail is damaged: " + strings.Join(why, "; ")
	// Noted in the trail itself, signed, chained onto the last entry that
	// can be trusted; the head is then reset to it, so that what follows
	// verifies from here on and Verify can tell the damage apart.
	detail := map[string]any{"reason": strings.Join(why, "; "), "stream_last": last}
	if headErr == nil {
		detail["head_seq"] = head.Seq
	}
	if lost > 0 {
		detail["lost"] = lost
	}
	if _, err := l.append(ctx, Entry{Actor: "oxios", Action: DamagedAction, Resource: "audit", Outcome: "failed", Detail: detail}, true); err != nil {
		return fmt.Errorf("note the audit trail's damage: %w", err)
	}
	return nil
}

var (
	errNoHead     = errors.New("the audit trail has no signed head")
	errBadHead    = errors.New("the audit trail's signed head does not verify")
	errUnreadable = errors.New("the audit entry cannot be read")
)

// loadKey reads the audit key, creating it on first use.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) < 32 {
			return nil, fmt.Errorf("audit key %s is damaged (want 64 hex digits)", path)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	// Link, not rename: if another process created the key meanwhile,
	// both use the one that is there.
	if err := os.Link(tmp, path); err != nil {
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return loadKey(path)
		}
		return nil, err
	}
	os.Remove(tmp)
	return key, nil
}

// LastSeq is the sequence of the newest entry (0 when there is none).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// loadLast reads the end of the chain, after another writer appended.
func (l *Log) loadLast(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return err
	}
	e, err := l.entryAt(ctx, info.State.LastSeq)
	if err != nil {
		return err
	}
	l.lastSeq, l.lastMAC = info.State.LastSeq, e.MAC
	return nil
}

// mac computes an entry's MAC: HMAC-SHA256 over its canonical JSON without
// the MAC, which includes its sequence and the previous entry's MAC.
func (l *Log) mac(e Entry) string {
	e.MAC = ""
	b, _ := json.Marshal(e)
	h := hmac.New(sha256.New, l.key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Append adds an entry at the end of the chain and returns it as stored.
// Secrets in Detail are redacted first. If another writer appended
// meanwhile (a daemon of the cluster), it chains onto that entry instead.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	// As Verify will read it: through JSON, so the MAC is over the same
	// representation (maps with sorted keys, numbers as JSON numbers).
	if e.Detail != nil {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return e, fmt.Errorf("audit detail: %w", err)
		}
		e.Detail = nil
		if err := json.Unmarshal(b, &e.Detail); err != nil {
			return e, err
		}
	}
	e.Detail = Redact(e.Detail)
	// Invalid UTF-8 would read back as U+FFFD and no longer match its MAC.
	for _, f := range []*string{&e.Actor, &e.Action, &e.Resource, &e.Outcome} {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	if e.Outcome == "" {
		e.Outcome = "ok"
	}
	e.Node = l.node
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chain(ctx, e, false)
}

// append is Append for Open, which holds no lock yet, with the head reset
// to the new entry if forceHead.
func (l *Log) append(ctx context.Context, e Entry, forceHead bool) (Entry, error) {
	if !forceHead {
		return l.Append(ctx, e)
	}
	b, _ := json.Marshal(e.Detail)
	e.Detail = nil
	json.Unmarshal(b, &e.Detail)
	e.Node = l.node
	return l.chain(ctx, e, true)
}

// chain links e onto the end and then signs the head (reset to e if
// forceHead). The caller holds l.mu.
func (l *Log) chain(ctx context.Context, e Entry, forceHead bool) (Entry, error) {
	for attempt := 0; ; attempt++ {
		e.Seq, e.Prev, e.Time = l.lastSeq+1, l.lastMAC, time.Now().UTC()
		e.MAC = l.mac(e)
		b, err := json.Marshal(e)
		if err != nil {
			return e, err
		}
		_, err = l.js.Publish(ctx, subject, b, jetstream.WithExpectLastSequence(l.lastSeq))
		if err == nil {
			l.lastSeq, l.lastMAC = e.Seq, e.MAC
			// The entry is stored whether or not its head is: a head that
			// could not be written catches up at the next append, and
			// until then it is behind the chain, which Verify accepts
			// (it only reports a chain shorter than its head).
			_ = l.putHead(ctx, e.Seq, e.MAC, forceHead)
			return e, nil
		}
		if attempt < 200 && isWrongSequence(err) {
			// Another writer got there first: chain onto its entry. A short
			// random pause keeps two busy writers from starving each other.
			select {
			case <-time.After(time.Duration(mrand.Int64N(int64(time.Millisecond) << min(attempt, 4)))):
			case <-ctx.Done():
				return e, ctx.Err()
			}
			if err := l.loadLast(ctx); err != nil {
				return e, err
			}
			continue
		}
		return e, fmt.Errorf("append audit entry: %w", err)
	}
}

func mustJSON(e Entry) []byte { b, _ := json.Marshal(e); return b }

// canonical re-encodes JSON so that key order and spacing do not matter.
func canonical(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	out, _ := json.Marshal(v)
	return out
}

var (
	secretKey   = regexp.MustCompile(`(?i)(key|token|secret|password|passwd|authorization|cookie|credential)`)
	secretValue = regexp.MustCompile(`\b(oxs_[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{8,}|sk-ant-[A-Za-z0-9_-]{8,})`)
)

// Redact returns detail with secrets replaced: values of keys that name a
// secret, and anything that looks like an oxios or provider token.
func Redact(detail map[string]any) map[string]any {
	if detail == nil {
		return nil
	}
	out := make(map[string]any, len(detail))
	for k, v := range detail {
		if secretKey.MatchString(k) {
			out[k] = "[redacted]"
			continue
		}
		out[k] = redactValue(v)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case string:
		return secretValue.ReplaceAllString(x, "[redacted]")
	case map[string]any:
		return Redact(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	}
	return v
}
