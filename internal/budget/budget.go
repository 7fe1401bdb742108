// Package budget limits what language-model agents use — tokens, cost in
// USD and model calls — over sliding time windows, for every agent
// ("global") or for the agents that carry a label ("label:team=research").
// Definitions and usage live in the budgets bucket; each node writes its
// own usage under a key of its own, and every node sums all of them, so
// nodes never contend for one key.
package budget

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
)

// Bucket is the key/value bucket of budgets and their usage.
const Bucket = "budgets"

// Global is the name of the budget every language-model agent is under.
const Global = "global"

// The budget vocabulary, defined in package oxios.
type (
	Limits = oxios.Limits
	Usage  = oxios.BudgetUsage
	Budget = oxios.Budget
	Status = oxios.BudgetStatus
)

// FromAgent converts an agent's usage.
func FromAgent(u oxios.Usage) Usage {
	v := Usage{Tokens: u.TokensIn + u.TokensOut, Calls: u.LLMCalls}
	if u.CostUSD != nil {
		v.CostUSD = *u.CostUSD
	}
	return v
}

var labelRe = regexp.MustCompile(`^label:([A-Za-z0-9][A-Za-z0-9._/-]{0,62})=([^\x00]{0,256})$`)

// ValidName checks a budget name.
func ValidName(name string) error {
	if name == Global || (utf8.ValidString(name) && labelRe.MatchString(name)) {
		return nil
	}
	return invalid("name", `must be "global" or "label:KEY=VALUE" such as "label:team=research" (got %q)`, name)
}

// ParseWindow reads a window: a Go duration ("90m", "24h") or whole days
// ("7d"), from 1s to 366d.
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 {
			return 0, invalid("window", `must be a duration such as "1h" or "24h", or days such as "7d" (got %q)`, s)
		}
		d = time.Duration(min(days, 1000)) * 24 * time.Hour
	} else {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, invalid("window", `must be a duration such as "1h" or "24h", or days such as "7d" (got %q)`, s)
		}
		d = v
	}
	if d < time.Second || d > 366*24*time.Hour {
		return 0, invalid("window", "must be from 1s to 366d (got %q)", s)
	}
	return d, nil
}

func invalid(field, format string, a ...any) error {
	return &oxios.InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks b and fills its default window (24h).
func Validate(b *Budget) error {
	if err := ValidName(b.Name); err != nil {
		return err
	}
	if b.Window == "" {
		b.Window = "24h"
	}
	if _, err := ParseWindow(b.Window); err != nil {
		return err
	}
	b.Window = strings.TrimSpace(b.Window)
	switch {
	case b.Tokens < 0:
		return invalid("tokens", "must be 0 (no limit) or more (got %d)", b.Tokens)
	case b.Calls < 0:
		return invalid("calls", "must be 0 (no limit) or more (got %d)", b.Calls)
	case b.CostUSD < 0 || math.IsNaN(b.CostUSD) || math.IsInf(b.CostUSD, 0):
		return invalid("cost_usd", "must be 0 (no limit) or a positive amount of USD (got %g)", b.CostUSD)
	case b.Tokens == 0 && b.Calls == 0 && b.CostUSD == 0:
		return invalid("tokens", "set at least one limit: tokens, cost_usd or calls")
	}
	return nil
}

// applies reports whether an agent with labels is under budget name.
func applies(name string, labels map[string]string) bool {
	if name == Global {
		return true
	}
	m := labelRe.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	v, ok := labels[m[1]]
	return ok && v == m[2]
}

// Error is a limit reached. It matches oxios.ErrBudget.
type Error struct {
	// Admission: the agent was not started; otherwise a model call was
	// refused mid-run.
	Admission bool
	// Budget is the budget's name, or "agent" for the spec's own limits.
	Budget  string
	Metric  string
	Used    float64
	Limit   float64
	Window  string
	FreesAt time.Time
}

func (e *Error) Error() string {
	what := "budget exceeded"
	if e.Admission {
		what = "budget exhausted"
	}
	used, limit := formatMetric(e.Metric, e.Used), formatMetric(e.Metric, e.Limit)
	if e.Budget == "agent" {
		return fmt.Sprintf("%s: the agent's own budget allows %s %s and it used %s", what, limit, e.Metric, used)
	}
	s := fmt.Sprintf("%s: %s allows %s %s per %s and %s were used", what, e.Budget, limit, e.Metric, e.Window, used)
	if !e.FreesAt.IsZero() {
		s += "; it frees at " + e.FreesAt.UTC().Format(time.RFC3339)
	}
	return s
}

// Is makes errors.Is(err, oxios.ErrBudget) true.
func (e *Error) Is(target error) bool { return target == oxios.ErrBudget }

func formatMetric(metric string, v float64) string {
	if metric == "cost_usd" {
		return "$" + strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatInt(int64(v), 10)
}

// metrics yields each limited metric with its use and limit.
// metric is one limited measure of a budget: its use against its limit.
type metric struct {
	name        string
	used, limit float64
}

func (m metric) reached() bool { return m.used >= m.limit }

func metrics(l Limits, u Usage) []metric {
	var out []metric
	if l.Tokens > 0 {
		out = append(out, metric{"tokens", float64(u.Tokens), float64(l.Tokens)})
	}
	if l.CostUSD > 0 {
		out = append(out, metric{"cost_usd", u.CostUSD, l.CostUSD})
	}
	if l.Calls > 0 {
		out = append(out, metric{"calls", float64(u.Calls), float64(l.Calls)})
	}
	return out
}

// SpecLimits are an agent spec's own limits.
func SpecLimits(s oxios.Spec) Limits {
	if s.Budget == nil {
		return Limits{}
	}
	return Limits{Tokens: s.Budget.Tokens, CostUSD: s.Budget.CostUSD, Calls: s.Budget.Calls}
}

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
func unhex(s string) (string, bool)       { b, err := hex.DecodeString(s); return string(b), err == nil }
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

// from is the start of b's window at now.
func from(b *Budget, now time.Time) time.Time {
	w, _ := ParseWindow(b.Window)
	f := now.Add(-w)
	if b.ResetAt != nil && b.ResetAt.After(f) {
		f = *b.ResetAt
	}
	return f
}

// slots returns every node's slots of budget name inside its window, oldest
// first. The caller holds s.mu.
func (s *Service) slotsLocked(b *Budget, now time.Time) []slot {
	f := from(b, now)
	var out []slot
	add := func(ss []slot) {
		for _, x := range ss {
			if !x.At.Before(f) {
				out = append(out, x)
			}
		}
	}
	add(s.own[b.Name])
	for _, ss := range s.others[b.Name] {
		add(ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// statusLocked computes b's status at now. The caller holds s.mu.
func (s *Service) statusLocked(b *Budget, now time.Time) Status {
	st := Status{Budget: *b}
	slots := s.slotsLocked(b, now)
	for _, x := range slots {
		st.Used.Add(x.Usage)
	}
	w, _ := ParseWindow(b.Window)
	var frees time.Time
	for _, m := range metrics(b.Limits, st.Used) {
		if !m.reached() {
			continue
		}
		st.Exhausted = true
		// The budget frees for this metric when enough of the oldest
		// usage has left the window.
		left := m.used
		for _, x := range slots {
			left -= metricOf(x.Usage, m.name)
			if left < m.limit {
				if t := x.At.Add(w); t.After(frees) {
					frees = t
				}
				break
			}
		}
	}
	if st.Exhausted && !frees.IsZero() {
		st.FreesAt = &frees
	}
	return st
}

func metricOf(u Usage, metric string) float64 {
	switch metric {
	case "tokens":
		return float64(u.Tokens)
	case "cost_usd":
		return u.CostUSD
	}
	return float64(u.Calls)
}

// exhaustedLocked returns the first limit reached of the budgets that
// apply to labels. The caller holds s.mu.
func (s *Service) exhaustedLocked(labels map[string]string, now time.Time, admission bool) *Error {
	names := make([]string, 0, len(s.defs))
	for n := range s.defs {
		if applies(n, labels) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var worst *Error
	for _, n := range names {
		b := s.defs[n]
		st := s.statusLocked(b, now)
		if !st.Exhausted {
			continue
		}
		for _, m := range metrics(b.Limits, st.Used) {
			if m.reached() {
				e := &Error{Admission: admission, Budget: n, Metric: m.name, Used: m.used, Limit: m.limit, Window: b.Window}
				if st.FreesAt != nil {
					e.FreesAt = *st.FreesAt
				}
				// The budget that frees last decides when the agent may go on.
				if worst == nil || e.FreesAt.After(worst.FreesAt) {
					worst = e
				}
				break
			}
		}
	}
	return worst
}

// Admit decides whether an llm agent may start. When a budget it is under
// is exhausted it returns an *Error with the time the budget frees, and a
// channel closed when any budget is changed (reset, raised, deleted).
func (s *Service) Admit(rec oxios.Record) (time.Time, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.exhaustedLocked(rec.Spec.Labels, s.Now(), true); e != nil {
		return e.FreesAt, s.changed, e
	}
	return time.Time{}, s.changed, nil
}

// Check is asked before every model call of an agent that has used used
// so far in this run.
func (s *Service) Check(rec oxios.Record, used oxios.Usage) error {
	if e := checkSpec(rec.Spec, FromAgent(used)); e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.exhaustedLocked(rec.Spec.Labels, s.Now(), false); e != nil {
		return e
	}
	return nil
}

func checkSpec(spec oxios.Spec, used Usage) *Error {
	for _, m := range metrics(SpecLimits(spec), used) {
		if m.reached() {
			return &Error{Budget: "agent", Metric: m.name, Used: m.used, Limit: m.limit}
		}
	}
	return nil
}

// Spend records one model call's usage (delta) of an agent whose run has
// used total so far, and publishes budget.warning at 80 % of a limit and
// budget.exceeded at 100 %, once per crossing. The usage counts here at
// once and is written to the bucket by the flusher within moments.
func (s *Service) Spend(rec oxios.Record, total, delta oxios.Usage) {
	d := FromAgent(delta)
	now := s.Now().UTC()
	type alert struct {
		typ  string
		data map[string]any
	}
	var alerts []alert
	s.mu.Lock()
	for n, b := range s.defs {
		if !applies(n, rec.Spec.Labels) {
			continue
		}
		w, _ := ParseWindow(b.Window)
		f := from(b, now)
		own := s.own[n][:0:0]
		for _, x := range s.own[n] {
			if !x.At.Before(f) {
				own = append(own, x)
			}
		}
		width := max(w/60, time.Second)
		if k := len(own) - 1; k >= 0 && now.Sub(own[k].At) < width {
			own[k].Add(d)
		} else {
			own = append(own, slot{At: now, Usage: d})
		}
		s.own[n] = own
		s.writeLocked(n, true)
		st := s.statusLocked(b, now)
		for _, m := range metrics(b.Limits, st.Used) {
			if typ := s.crossLocked(n, m); typ != "" {
				alerts = append(alerts, alert{typ, map[string]any{"budget": n, "metric": m.name, "used": m.used, "limit": m.limit, "window": b.Window}})
			}
		}
	}
	s.mu.Unlock()
	// The agent's own limits, against its run's usage.
	for _, m := range metrics(SpecLimits(rec.Spec), FromAgent(total)) {
		before := m.used - metricOf(d, m.name)
		if typ := crossing(before, m.used, m.limit); typ != "" {
			alerts = append(alerts, alert{typ, map[string]any{"budget": "agent", "metric": m.name, "used": m.used, "limit": m.limit}})
		}
	}
	for _, a := range alerts {
		s.publish(rec.ID, a.typ, a.data)
	}
}

// crossing says which alert a move from before to after crosses.
func crossing(before, after, limit float64) string {
	switch {
	case before < limit && after >= limit:
		return "budget.exceeded"
	case before < 0.8*limit && after >= 0.8*limit:
		return "budget.warning"
	}
	return ""
}

// crossLocked updates the alert level of one metric of budget n and
// returns the event to publish, if it rose. The caller holds s.mu.
func (s *Service) crossLocked(n string, m metric) string {
	used, limit := m.used, m.limit
	level := 0
	switch {
	case used >= limit:
		level = 2
	case used >= 0.8*limit:
		level = 1
	}
	k := alertKey(n, m.name)
	prev := s.alerts[k]
	s.alerts[k] = level
	switch {
	case level == 2 && prev < 2:
		return "budget.exceeded"
	case level == 1 && prev < 1:
		return "budget.warning"
	}
	return ""
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
