// Package audit keeps the tamper-evident audit trail: every entry is
// chained to the one before by an HMAC-SHA256 under a key kept in the
// secrets directory, stored in a stream that refuses deletes and purges,
// and appended with an expected last sequence so the chain cannot fork.
package audit

import (
	"bytes"
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
)

// Stream is the JetStream stream of the audit trail.
const Stream = "OXIOS_AUDIT"

const subject = "oxios.audit"

// Entry is one audited action.
type Entry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Resource string    `json:"resource"`
	// Outcome is ok, denied or failed.
	Outcome string         `json:"outcome"`
	Detail  map[string]any `json:"detail,omitempty"`
	// Prev is the MAC of the entry before (empty for the first).
	Prev string `json:"prev"`
	MAC  string `json:"mac"`
}

// Log is the audit trail.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	key    []byte

	mu      sync.Mutex // serializes appends from this process
	lastSeq uint64
	lastMAC string
}

// Open creates or opens the audit stream, with the key at keyPath
// (created, 0600, on first use).
func Open(ctx context.Context, js jetstream.JetStream, keyPath string, replicas int) (*Log, error) {
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, err
	}
	if replicas == 0 {
		replicas = 1
	}
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
	l := &Log{js: js, stream: st, key: key}
	if err := l.loadLast(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

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

func (l *Log) loadLast(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return err
	}
	l.lastSeq, l.lastMAC = info.State.LastSeq, ""
	if info.State.Msgs == 0 {
		return nil
	}
	m, err := l.stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return fmt.Errorf("read the last audit entry: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return fmt.Errorf("the last audit entry (%d) is unreadable: %w", info.State.LastSeq, err)
	}
	l.lastMAC = e.MAC
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
	l.mu.Lock()
	defer l.mu.Unlock()
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
			return e, nil
		}
		var apiErr *jetstream.APIError
		if attempt < 200 && errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
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
	err := l.each(ctx, f.After+1, func(e Entry, _ []byte) bool {
		if f.match(e) {
			out = append(out, e)
		}
		return len(out) < f.Limit
	})
	return out, err
}

// each calls fn with every entry from sequence from, in order, until fn
// returns false.
func (l *Log) each(ctx context.Context, from uint64, fn func(e Entry, raw []byte) bool) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	if from < 1 {
		from = 1
	}
	if from > last {
		return nil
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			var e Entry
			if json.Unmarshal(m.Data(), &e) != nil {
				e = Entry{Seq: md.Sequence.Stream, Action: "(unreadable)"}
			}
			if !fn(e, m.Data()) || md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("the audit stream ended before sequence %d", last)
		}
	}
}

// Verdict is the result of Verify.
type Verdict struct {
	OK      bool   `json:"ok"`
	Entries uint64 `json:"entries"`
	// FirstBroken is the first entry that does not verify (0 when OK).
	FirstBroken uint64 `json:"first_broken,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Verify walks the whole chain and names the first entry whose sequence,
// link to the previous entry or MAC is wrong.
func (l *Log) Verify(ctx context.Context) (Verdict, error) {
	var v Verdict
	expect, prev := uint64(1), ""
	info, err := l.stream.Info(ctx)
	if err != nil {
		return v, err
	}
	if info.State.FirstSeq > 1 && info.State.Msgs > 0 {
		return Verdict{FirstBroken: 1, Reason: fmt.Sprintf("entries 1 to %d are missing", info.State.FirstSeq-1)}, nil
	}
	err = l.each(ctx, 1, func(e Entry, raw []byte) bool {
		v.Entries++
		var why string
		switch {
		case e.Action == "(unreadable)":
			why = "the entry is not valid JSON"
		case e.Seq != expect:
			why = fmt.Sprintf("it says sequence %d, expected %d (an entry is missing or out of place)", e.Seq, expect)
		case e.Prev != prev:
			why = "its link to the previous entry does not match"
		case !hmac.Equal([]byte(l.mac(e)), []byte(e.MAC)):
			why = "its MAC does not match its content (it was changed)"
		case !bytes.Equal(canonical(raw), canonical(mustJSON(e))):
			why = "it holds data outside the signed fields"
		}
		if why != "" {
			v.FirstBroken, v.Reason = expect, why
			return false
		}
		expect, prev = expect+1, e.MAC
		return true
	})
	if err != nil {
		return v, err
	}
	v.OK = v.FirstBroken == 0
	return v, nil
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
