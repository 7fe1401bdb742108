// Package store keeps namespaced, versioned JSON documents in a JetStream
// key/value bucket. Every write returns a revision; updates and deletes can
// be made conditional on it. Reads are served from an in-memory copy kept
// current by watching the bucket, so they cost no round trip.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxValueSize is the largest value a document may hold.
const MaxValueSize = 1 << 20

// Errors callers test for.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the document's revision is not the one expected.
	ErrConflict = errors.New("revision conflict")
	// ErrExists: Create found a document already there.
	ErrExists = errors.New("already exists")
)

// InvalidError is bad input: Field names what is wrong.
type InvalidError = oxios.InvalidError

// TooLargeError is a value over MaxValueSize.
type TooLargeError struct{ Size int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("value is %d bytes; the limit is %d (1 MiB)", e.Size, MaxValueSize)
}

var (
	nsRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	keyRe = regexp.MustCompile(`^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*$`)
)

// maxKeyLen bounds keys so that namespace + key fit in a NATS subject.
const maxKeyLen = 512

// ValidateNamespace checks a namespace name.
func ValidateNamespace(ns string) error {
	if !nsRe.MatchString(ns) {
		return &InvalidError{Field: "namespace", Msg: fmt.Sprintf("must be 1 to 64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit (got %q)", ns)}
	}
	return nil
}

// ValidateKey checks a key.
func ValidateKey(key string) error {
	// '/' separates, like '.': not first, last or doubled either.
	slashes := strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "//") ||
		strings.Contains(key, "/.") || strings.Contains(key, "./")
	if len(key) == 0 || len(key) > maxKeyLen || !keyRe.MatchString(key) || slashes {
		return &InvalidError{Field: "key", Msg: fmt.Sprintf("must be 1 to %d characters: letters, digits, '-', '_', '=', '/' and '.' ('/' and '.' not first, last, doubled or together) (got %q)", maxKeyLen, key)}
	}
	return nil
}

// ValidatePrefix checks a key prefix for List and Watch (it may be empty or
// end in the middle of a key).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > maxKeyLen || !keyRe.MatchString(strings.TrimSuffix(prefix, ".")) {
		return &InvalidError{Field: "prefix", Msg: fmt.Sprintf("must be the start of a valid key (got %q)", prefix)}
	}
	return nil
}

// Entry is one document at one revision.
type Entry = oxios.Entry

// Op says what a Change did.
type Op string

// Kinds of change.
const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// Change is one write seen by Watch.
type Change struct {
	Op Op `json:"op"`
	Entry
}

// Store is one bucket of documents.
type Store struct {
	kv jetstream.KeyValue

	mu    sync.RWMutex
	cache map[string]cached // bucket key -> latest known revision
	stop  func()
	done  chan struct{}
}

type cached struct {
	value   []byte
	rev     uint64
	updated time.Time
	fromLog bool // read from the bucket (not a write made here)
	deleted bool
}

// Options configure a bucket.
type Options struct {
	// Bucket is the JetStream key/value bucket name.
	Bucket string
	// History is how many revisions of each key are kept (1 to 64).
	History  uint8
	Replicas int
}

// Open creates or updates the bucket, loads its current contents into
// memory and keeps them current until Close.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.History == 0 {
		o.History = 1
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       o.Bucket,
		History:      o.History,
		MaxValueSize: MaxValueSize,
		Storage:      jetstream.FileStorage,
		Replicas:     o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", o.Bucket, err)
	}
	s := &Store{kv: kv, cache: map[string]cached{}, done: make(chan struct{})}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch bucket %s: %w", o.Bucket, err)
	}
	s.stop = cancel
	loaded := make(chan struct{})
	go s.follow(wctx, w, loaded)
	select {
	case <-loaded:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	return s, nil
}

// follow applies every change of the bucket to the cache. The first nil
// entry marks the end of the initial values. If the watch ends while the
// store is open (the backbone dropped it), it is made again from the
// revision after the last one seen, so the cache never silently goes stale.
func (s *Store) follow(ctx context.Context, w jetstream.KeyWatcher, loaded chan struct{}) {
	defer close(s.done)
	var last uint64
	for {
		for e := range w.Updates() {
			if e == nil {
				if loaded != nil {
					close(loaded)
					loaded = nil
				}
				continue
			}
			last = max(last, e.Revision())
			s.apply(e.Key(), cached{value: e.Value(), rev: e.Revision(), updated: e.Created(), deleted: e.Operation() != jetstream.KeyValuePut, fromLog: true})
		}
		w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			opts := []jetstream.WatchOpt{}
			if last > 0 {
				opts = append(opts, jetstream.ResumeFromRevision(last+1))
			}
			nw, err := s.kv.WatchAll(ctx, opts...)
			if err == nil {
				w = nw
				break
			}
		}
	}
}

// apply records a revision unless a newer one is already known, so the
// watcher lagging behind a local write never goes back in time.
func (s *Store) apply(k string, c cached) {
	s.mu.Lock()
	if cur, ok := s.cache[k]; !ok || c.rev > cur.rev {
		s.cache[k] = c
	} else if c.rev == cur.rev && c.fromLog {
		// The log's copy of a write made here: take its time (the
		// server's), so that every node and a restored backup say the same.
		cur.updated = c.updated
		s.cache[k] = cur
	}
	s.mu.Unlock()
}

// Close stops following the bucket.
func (s *Store) Close() {
	s.stop()
	<-s.done
}

func bucketKey(ns, key string) string { return ns + "." + key }

func check(ns, key string) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	return ValidateKey(key)
}

func checkValue(v []byte) error {
	if len(v) > MaxValueSize {
		return &TooLargeError{Size: len(v)}
	}
	if !json.Valid(v) {
		return &InvalidError{Field: "value", Msg: "must be valid JSON"}
	}
	// Valid JSON text that readers choke on (jq, JavaScript): text that
	// is not UTF-8, a lone UTF-16 surrogate escape, a number no float64
	// holds.
	if !utf8.Valid(v) {
		return &InvalidError{Field: "value", Msg: "must be UTF-8 text"}
	}
	if loneSurrogate(v) {
		return &InvalidError{Field: "value", Msg: "must not hold a lone UTF-16 surrogate escape such as \\ud800"}
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(n), 64); err != nil {
				return &InvalidError{Field: "value", Msg: fmt.Sprintf("number %.40s is out of the range of a 64-bit float", n)}
			}
		}
	}
	return nil
}

// loneSurrogate reports a \uD800-\uDFFF escape that is not a high one
// followed by a low one.
func loneSurrogate(v []byte) bool {
	for i := 0; i+6 <= len(v); i++ {
		if v[i] != '\\' {
			continue
		}
		if v[i+1] != 'u' {
			i++ // an escaped character, \\ included
			continue
		}
		r, err := strconv.ParseUint(string(v[i+2:i+6]), 16, 16)
		if err != nil {
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00: // high: a low must follow
			if i+12 > len(v) || v[i+6] != '\\' || v[i+7] != 'u' {
				return true
			}
			lo, err := strconv.ParseUint(string(v[i+8:i+12]), 16, 16)
			if err != nil || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

// Get returns the document's latest revision.
func (s *Store) Get(ctx context.Context, ns, key string) (Entry, error) {
	if err := check(ns, key); err != nil {
		return Entry{}, err
	}
	if err := ctx.Err(); err != nil { // served from memory, but not to a caller gone
		return Entry{}, err
	}
	s.mu.RLock()
	c, ok := s.cache[bucketKey(ns, key)]
	s.mu.RUnlock()
	if !ok || c.deleted {
		return Entry{}, ErrNotFound
	}
	return Entry{Namespace: ns, Key: key, Value: c.value, Revision: c.rev, Updated: c.updated}, nil
}

// Put writes the document whatever its current revision.
func (s *Store) Put(ctx context.Context, ns, key string, value []byte) (uint64, error) {
	return s.write(ns, key, value, func(k string) (uint64, error) { return s.kv.Put(ctx, k, value) })
}

// Create writes the document only if it does not exist (or was deleted).
func (s *Store) Create(ctx context.Context, ns, key string, value []byte) (uint64, error) {
	return s.write(ns, key, value, func(k string) (uint64, error) {
		rev, err := s.kv.Create(ctx, k, value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrExists
		}
		return rev, err
	})
}

// Update writes the document only if its latest revision is rev.
func (s *Store) Update(ctx context.Context, ns, key string, value []byte, rev uint64) (uint64, error) {
	return s.write(ns, key, value, func(k string) (uint64, error) {
		n, err := s.kv.Update(ctx, k, value, rev)
		if isWrongRevision(err) {
			return 0, ErrConflict
		}
		return n, err
	})
}

func (s *Store) write(ns, key string, value []byte, do func(k string) (uint64, error)) (uint64, error) {
	if err := check(ns, key); err != nil {
		return 0, err
	}
	if err := checkValue(value); err != nil {
		return 0, err
	}
	k := bucketKey(ns, key)
	rev, err := do(k)
	if err != nil {
		return 0, err
	}
	// The caller must read its own write even before the watcher sees it.
	s.apply(k, cached{value: append([]byte(nil), value...), rev: rev, updated: time.Now().UTC()})
	return rev, nil
}

// Delete removes the document. With rev > 0 it deletes only if the latest
// revision is rev. It returns ErrNotFound if there is nothing to delete.
func (s *Store) Delete(ctx context.Context, ns, key string, rev uint64) error {
	if err := check(ns, key); err != nil {
		return err
	}
	k := bucketKey(ns, key)
	cur, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if rev == 0 {
		rev = cur.Revision() // delete exactly what we found: never a later write
	} else if rev != cur.Revision() {
		return ErrConflict
	}
	if err := s.kv.Delete(ctx, k, jetstream.LastRevision(rev)); err != nil {
		if isWrongRevision(err) {
			return ErrConflict
		}
		return err
	}
	// The delete marker's revision is unknown here; rev+1 is a lower bound
	// that orders it after the deleted write until the watcher catches up.
	s.apply(k, cached{rev: rev + 1, deleted: true})
	return nil
}

func isWrongRevision(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// List returns up to limit documents of ns whose keys start with prefix, in
// key order, after the key cursor (exclusive; "" starts at the beginning).
// next is the cursor of the following page, or "" after the last page.
func (s *Store) List(ctx context.Context, ns, prefix string, limit int, cursor string) (entries []Entry, next string, err error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, "", err
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = 100
	}
	full := ns + "." + prefix
	s.mu.RLock()
	keys := make([]string, 0, 64)
	for k, c := range s.cache {
		if !c.deleted && strings.HasPrefix(k, full) && k[len(ns)+1:] > cursor {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > limit {
		keys, next = keys[:limit], keys[limit-1][len(ns)+1:]
	}
	entries = make([]Entry, len(keys))
	for i, k := range keys {
		c := s.cache[k]
		entries[i] = Entry{Namespace: ns, Key: k[len(ns)+1:], Value: c.value, Revision: c.rev, Updated: c.updated}
	}
	s.mu.RUnlock()
	return entries, next, nil
}

// Watch delivers every change to documents of ns whose keys start with
// prefix, in order, until ctx is done; with current set, the current
// documents come first. The channel is closed when the watch ends.
func (s *Store) Watch(ctx context.Context, ns, prefix string, current bool) (<-chan Change, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	var opts []jetstream.WatchOpt
	if !current {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	w, err := s.kv.Watch(ctx, ns+".>", opts...)
	if err != nil {
		return nil, err
	}
	out := make(chan Change, 64)
	full := ns + "." + prefix
	go func() {
		defer close(out)
		defer w.Stop()
		initial := current // until the end-of-initial-values marker
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					initial = false
					continue
				}
				if !strings.HasPrefix(e.Key(), full) {
					continue
				}
				if initial && e.Operation() != jetstream.KeyValuePut {
					continue // a document deleted long ago is not a current value
				}
				ch := Change{Op: OpPut, Entry: Entry{Namespace: ns, Key: e.Key()[len(ns)+1:], Value: e.Value(), Revision: e.Revision(), Updated: e.Created()}}
				if e.Operation() != jetstream.KeyValuePut {
					ch.Op, ch.Value = OpDelete, nil
				}
				select {
				case out <- ch:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
