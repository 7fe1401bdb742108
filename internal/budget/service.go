package budget

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
)

// Publisher publishes events; *bus.Bus is one.
type Publisher interface {
	PublishAsync(ev bus.Event) (*bus.Pending, error)
}

// slot is usage that began at At; a slot spans a sixtieth of the window.
type slot struct {
	At time.Time `json:"t"`
	Usage
}

type stored struct {
	Slots []slot `json:"slots"`
}

// Service enforces budgets. Create it with Open.
type Service struct {
	kv   jetstream.KeyValue
	node string
	bus  Publisher
	log  *slog.Logger
	// Now is the clock; tests set it.
	Now func() time.Time

	mu      sync.Mutex
	defs    map[string]*Budget
	own     map[string][]slot            // this node's usage by budget
	others  map[string]map[string][]slot // other nodes' usage by budget, node
	alerts  map[string]int               // "budget/metric" -> 1 warned, 2 exceeded
	changed chan struct{}                // closed at each change of a definition
	// pending are this node's usage keys to write (true) or purge (false),
	// by budget; one goroutine does it, in order, coalescing bursts.
	pending map[string]bool
	kick    chan struct{}
	flushed chan struct{}
	loaded  bool
	// queued counts changes handed to the flusher, stored those it has
	// written; synced is signalled at each flush.
	queued, stored uint64
	synced         *sync.Cond
	flushDone      bool

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Open opens the budgets bucket and follows it.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, node string, pub Publisher, log *slog.Logger) (*Service, error) {
	if replicas == 0 {
		replicas = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	s := &Service{kv: kv, node: node, bus: pub, log: log, Now: time.Now,
		defs: map[string]*Budget{}, own: map[string][]slot{}, others: map[string]map[string][]slot{},
		alerts: map[string]int{}, changed: make(chan struct{}), pending: map[string]bool{},
		kick: make(chan struct{}, 1), flushed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.synced = sync.NewCond(&s.mu)
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, err
	}
	go s.flushLoop()
	loaded := make(chan struct{})
	go s.follow(w, loaded)
	select {
	case <-loaded:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	s.dropOwnReservations(ctx)
	return s, nil
}

// Close stops following the bucket, after writing what is pending.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	<-s.flushed
}

func (s *Service) follow(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer close(s.done)
	defer w.Stop()
	for {
		select {
		case <-s.stop:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				s.mu.Lock()
				first := !s.loaded
				s.loaded = true
				s.mu.Unlock()
				if first {
					close(loaded)
				}
				continue
			}
			s.apply(e)
		}
	}
}

func defKey(name string) string { return "def." + hex.EncodeToString([]byte(name)) }

func useKey(name, node string) string {
	return "use." + hex.EncodeToString([]byte(name)) + "." + hex.EncodeToString([]byte(node))
}

func unhex(s string) (string, bool) { b, err := hex.DecodeString(s); return string(b), err == nil }

func alertKey(name, metric string) string { return name + "/" + metric }

func (s *Service) apply(e jetstream.KeyValueEntry) {
	parts := strings.Split(e.Key(), ".")
	if len(parts) < 2 {
		return
	}
	name, ok := unhex(parts[1])
	if !ok {
		return
	}
	put := e.Operation() == jetstream.KeyValuePut
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case parts[0] == "def" && len(parts) == 2:
		var b Budget
		if !put || json.Unmarshal(e.Value(), &b) != nil {
			s.mu.Unlock()
			s.forget(name)
			s.mu.Lock()
			return
		}
		s.defs[name] = &b
		close(s.changed)
		s.changed = make(chan struct{})
	case parts[0] == "use" && len(parts) == 3:
		node, ok := unhex(parts[2])
		if !ok {
			return
		}
		var st stored
		if put && json.Unmarshal(e.Value(), &st) != nil {
			return
		}
		if node == s.node {
			// This node's usage is kept in memory; the bucket is read for
			// it only at start.
			if !s.loaded && put {
				s.own[name] = st.Slots
			}
			return
		}
		if !put {
			delete(s.others[name], node)
			return
		}
		if s.others[name] == nil {
			s.others[name] = map[string][]slot{}
		}
		s.others[name][node] = st.Slots
	}
}

func (s *Service) publish(agentID, typ string, data map[string]any) {
	if s.bus == nil {
		return
	}
	b, _ := json.Marshal(data)
	if _, err := s.bus.PublishAsync(bus.Event{Type: typ, AgentID: agentID, Data: b}); err != nil {
		s.log.Warn("publish", "type", typ, "err", err)
	}
}

// writeLocked has this node's usage of budget n stored (keep) or purged,
// soon. The caller holds s.mu.
func (s *Service) writeLocked(n string, keep bool) {
	s.pending[n] = keep
	s.queued++
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Sync waits until the usage counted so far is written to the bucket (or
// ctx ends). A run calls it before its end is recorded, so that a daemon
// killed after that loses none of the run's usage.
func (s *Service) Sync(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.synced.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.queued
	for s.stored < want && ctx.Err() == nil && !s.flushDone {
		s.synced.Wait()
	}
}

// flushLoop stores pending usage until Close, and once more after it. A
// write that fails is tried again a second later.
func (s *Service) flushLoop() {
	defer func() {
		s.mu.Lock()
		s.flushDone = true // nothing more will be written
		s.synced.Broadcast()
		s.mu.Unlock()
		close(s.flushed)
	}()
	var retry <-chan time.Time
	for {
		select {
		case <-s.kick:
		case <-retry:
		case <-s.stop:
			s.flush()
			return
		}
		retry = nil
		if !s.flush() {
			retry = time.After(time.Second)
		}
	}
}

// flush writes what is pending and reports whether all of it was written.
func (s *Service) flush() bool {
	s.mu.Lock()
	pending, upto := s.pending, s.queued
	s.pending = map[string]bool{}
	data := map[string][]byte{}
	for n, keep := range pending {
		if _, defined := s.defs[n]; keep && defined {
			data[n], _ = json.Marshal(stored{Slots: s.own[n]})
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var failed []string
	for n := range pending {
		var err error
		if b, ok := data[n]; ok {
			_, err = s.kv.Put(ctx, useKey(n, s.node), b)
		} else {
			err = s.kv.Purge(ctx, useKey(n, s.node))
		}
		if err != nil {
			s.log.Error("write budget usage", "budget", n, "err", err)
			failed = append(failed, n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range failed {
		if _, newer := s.pending[n]; !newer {
			s.pending[n] = pending[n]
		}
	}
	if len(failed) == 0 {
		s.stored = max(s.stored, upto)
		s.synced.Broadcast()
	}
	return len(failed) == 0
}

// Set creates or replaces a budget. Its usage so far is kept.
func (s *Service) Set(ctx context.Context, b Budget) (Status, error) {
	if err := Validate(&b); err != nil {
		return Status{}, err
	}
	err := s.modify(ctx, b.Name, true, func(cur *Budget) {
		reset := cur.ResetAt
		*cur = b
		cur.ResetAt, cur.UpdatedAt = reset, s.Now().UTC()
	})
	if err != nil {
		return Status{}, err
	}
	s.alertNow(b.Name)
	return s.Get(b.Name)
}

// modify changes a budget's definition (a new one starts zero, if create)
// with a
// compare-and-set on its revision, so that concurrent changes on any node
// (a reset and a change of limits) are never lost. It applies the result
// here at once; the watch confirms it.
func (s *Service) modify(ctx context.Context, name string, create bool, change func(*Budget)) error {
	key := defKey(name)
	for attempt := 0; ; attempt++ {
		var cur Budget
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case err == nil:
			if json.Unmarshal(e.Value(), &cur) != nil {
				cur = Budget{}
			}
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("read budget %s: %w", name, err)
		case !create:
			return &oxios.NotFoundError{What: "budget " + name}
		}
		change(&cur)
		data, _ := json.Marshal(cur)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, data)
		} else {
			_, err = s.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			s.mu.Lock()
			s.defs[name] = &cur
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		if attempt >= 10 || !casConflict(err) {
			return fmt.Errorf("write budget %s: %w", name, err)
		}
	}
}

// casConflict reports a compare-and-set that lost to another write.
func casConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// alertNow publishes budget.exceeded or budget.warning for a budget whose
// limits were just lowered below (or near) what is used.
func (s *Service) alertNow(name string) {
	s.mu.Lock()
	b, ok := s.defs[name]
	var alerts []map[string]any
	var types []string
	if ok {
		st := s.statusLocked(b, s.Now())
		for _, m := range metrics(b.Limits, st.Used) {
			if typ := s.crossLocked(name, m); typ != "" {
				types = append(types, typ)
				alerts = append(alerts, map[string]any{"budget": name, "metric": m.name, "used": m.used, "limit": m.limit, "window": b.Window})
			}
		}
	}
	s.mu.Unlock()
	for i, a := range alerts {
		s.publish("", types[i], a)
	}
}

// Get returns a budget's status.
func (s *Service) Get(name string) (Status, error) {
	if err := ValidName(name); err != nil {
		return Status{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.defs[name]
	if !ok {
		return Status{}, &oxios.NotFoundError{What: "budget " + name}
	}
	return s.statusLocked(b, s.Now()), nil
}

// List returns every budget's status, by name.
func (s *Service) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	out := make([]Status, 0, len(s.defs))
	for _, b := range s.defs {
		out = append(out, s.statusLocked(b, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Reset forgets a budget's usage so far, on every node.
func (s *Service) Reset(ctx context.Context, name string) (Status, error) {
	if _, err := s.Get(name); err != nil {
		return Status{}, err
	}
	now := s.Now().UTC()
	if err := s.modify(ctx, name, false, func(b *Budget) { b.ResetAt, b.UpdatedAt = &now, now }); err != nil {
		return Status{}, err
	}
	s.mu.Lock()
	s.own[name] = nil
	for k := range s.alerts {
		if strings.HasPrefix(k, name+"/") {
			delete(s.alerts, k)
		}
	}
	s.writeLocked(name, true)
	s.mu.Unlock()
	return s.Get(name)
}

// Delete removes a budget and its usage on every node.
func (s *Service) Delete(ctx context.Context, name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, defKey(name)); err != nil {
		return fmt.Errorf("delete budget %s: %w", name, err)
	}
	s.kv.Purge(ctx, resKey(name))
	s.forget(name)
	if lister, err := s.kv.ListKeysFiltered(ctx, "use."+hex.EncodeToString([]byte(name))+".*"); err == nil {
		for k := range lister.Keys() {
			s.kv.Purge(ctx, k)
		}
	}
	return nil
}

// forget drops a deleted budget here. Its usage key is purged by its own
// node too, in case a write of that node raced with the deletion.
func (s *Service) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, had := s.defs[name]; had {
		s.writeLocked(name, false)
	}
	delete(s.defs, name)
	delete(s.own, name)
	delete(s.others, name)
	close(s.changed)
	s.changed = make(chan struct{})
}
