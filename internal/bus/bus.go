// Package bus is the durable event log: events are published to a
// JetStream stream with a sequence number, and subscribers receive them
// live, from a given sequence, or both, filtered by type and agent.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream is the JetStream stream that holds the events.
const Stream = "OXIOS_EVENTS"

const subjectPrefix = "oxios.evt."

// Event is the envelope of every event.
type Event struct {
	// Seq is the event's position in the log, assigned when stored.
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	AgentID string          `json:"agent_id,omitempty"`
	Node    string          `json:"node"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// GapType is the type of the synthetic event a subscriber receives when
// events it asked for are no longer in the log (dropped by retention).
// Its data says which sequences were missed; it is never stored.
const GapType = "bus.gap"

// InvalidError is bad input; Field names what is wrong.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

var (
	typeRe  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}\.[a-z0-9_-]{1,64}$`)
	agentRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	tokenRe = regexp.MustCompile(`^([a-z][a-z0-9_]{0,31}|\*)$`)
	nameRe  = regexp.MustCompile(`^([a-z0-9_-]{1,64}|\*)$`)
)

// ValidateType checks an event type: "<domain>.<name>", e.g. "agent.started".
func ValidateType(t string) error {
	if !typeRe.MatchString(t) {
		return &InvalidError{Field: "type", Msg: fmt.Sprintf("must be <domain>.<name> in lowercase letters, digits, '_' and '-', e.g. \"custom.build_done\" (got %q)", t)}
	}
	return nil
}

// ValidateAgent checks an agent id used in an event or a filter.
func ValidateAgent(id string) error {
	if !agentRe.MatchString(id) {
		return &InvalidError{Field: "agent", Msg: fmt.Sprintf("must be an agent id of letters, digits, '-' and '_' (got %q)", id)}
	}
	return nil
}

// Options configure the event stream.
type Options struct {
	// Node is written into every event published here.
	Node     string
	MaxAge   time.Duration
	MaxBytes int64
	Replicas int
}

// Bus publishes and delivers events.
type Bus struct {
	js   jetstream.JetStream
	node string
}

// Open creates or updates the event stream.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Bus, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "oxios events",
		Subjects:    []string{subjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    o.MaxBytes,
		Replicas:    o.Replicas,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", Stream, err)
	}
	return &Bus{js: js, node: o.Node}, nil
}

// Publish stores an event and returns it with its sequence, id and time set.
// Type must be valid; AgentID is optional. It returns once the event is
// durable in the log (acknowledged by JetStream).
func (b *Bus) Publish(ctx context.Context, ev Event) (Event, error) {
	if err := ValidateType(ev.Type); err != nil {
		return ev, err
	}
	if ev.AgentID != "" {
		if err := ValidateAgent(ev.AgentID); err != nil {
			return ev, err
		}
	}
	if ev.Data != nil && !json.Valid(ev.Data) {
		return ev, &InvalidError{Field: "data", Msg: "must be valid JSON"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return ev, err
	}
	ev.Seq, ev.ID, ev.Time, ev.Node = 0, id.String(), time.Now().UTC(), b.node
	payload, err := json.Marshal(ev)
	if err != nil {
		return ev, err
	}
	agent := ev.AgentID
	if agent == "" {
		agent = "-"
	}
	ack, err := b.js.Publish(ctx, subjectPrefix+ev.Type+"."+agent, payload, jetstream.WithMsgID(ev.ID))
	if err != nil {
		return ev, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	ev.Seq = ack.Sequence
	return ev, nil
}

// LastSeq is the sequence of the newest event in the log (0 when empty).
func (b *Bus) LastSeq(ctx context.Context) (uint64, error) {
	s, err := b.js.Stream(ctx, Stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// Filter selects events.
type Filter struct {
	// Types are type patterns: "agent.started", "agent.*", "*.finished",
	// "agent" (= "agent.*"), or "*" for all. Empty means all.
	Types []string
	// Agent limits events to one agent id; empty means all.
	Agent string
}

// subjects turns the filter into JetStream subject filters.
func (f Filter) subjects() ([]string, error) {
	agent := "*"
	if f.Agent != "" {
		if err := ValidateAgent(f.Agent); err != nil {
			return nil, err
		}
		agent = f.Agent
	}
	types := f.Types
	if len(types) == 0 {
		types = []string{"*"}
	}
	seen := map[string]bool{}
	var subs []string
	for _, t := range types {
		t = strings.TrimSpace(t)
		pat, err := typePattern(t)
		if err != nil {
			return nil, err
		}
		s := subjectPrefix + pat + "." + agent
		if !seen[s] {
			seen[s] = true
			subs = append(subs, s)
		}
	}
	if len(subs) > 1 {
		for _, s := range subs {
			if s == subjectPrefix+"*.*."+agent {
				return []string{s}, nil // all types: the others overlap it
			}
		}
	}
	return subs, nil
}

func typePattern(t string) (string, error) {
	switch t {
	case "*", ">", "*.*":
		return "*.*", nil
	}
	domain, name, ok := strings.Cut(t, ".")
	if !ok {
		name = "*"
	}
	if name == ">" {
		name = "*"
	}
	if !tokenRe.MatchString(domain) || !nameRe.MatchString(name) {
		return "", &InvalidError{Field: "type", Msg: fmt.Sprintf("%q is not a type pattern: use <domain>.<name> where either part may be '*', e.g. \"agent.*\" or \"tool.finished\"", t)}
	}
	return domain + "." + name, nil
}

// ValidateFilter reports a bad filter before any subscription is made.
func ValidateFilter(f Filter) error {
	_, err := f.subjects()
	return err
}

// Subscription delivers events in sequence order.
type Subscription struct {
	// C delivers the events; it is closed when the subscription ends.
	C      <-chan Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Close ends the subscription and waits for its goroutine.
func (s *Subscription) Close() {
	s.cancel()
	<-s.done
}

// Err is why the subscription ended, once C is closed (nil after Close).
func (s *Subscription) Err() error {
	<-s.done
	return s.err
}

// SubscribeOptions say where a subscription starts and when it ends.
type SubscribeOptions struct {
	// After starts with the first event after this sequence (0: the oldest
	// event still in the log). With FromNow set it is ignored.
	After uint64
	// FromNow starts with the next event published.
	FromNow bool
	// UntilCaughtUp ends the subscription once it has delivered every
	// matching event stored when it started, instead of going on live.
	UntilCaughtUp bool
	// Buffer is the capacity of C (default 256).
	Buffer int
}

// Subscribe delivers the matching events from the chosen start, then live,
// with no gap and no duplicate. A slow reader of C never blocks publishers:
// the subscription pulls from the durable log at its own pace, one batch
// at a time. If events it asked for were dropped by retention, it first
// delivers one GapType event saying which.
func (b *Bus) Subscribe(ctx context.Context, f Filter, o SubscribeOptions) (*Subscription, error) {
	subs, err := f.subjects()
	if err != nil {
		return nil, err
	}
	stream, err := b.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	info := stream.CachedInfo().State
	// next is the first sequence to deliver; 0 means "from now".
	var next uint64
	switch {
	case o.FromNow:
		next = info.LastSeq + 1
	default:
		next = o.After + 1
	}
	// endSeq is the last stored event that matches, for UntilCaughtUp.
	var endSeq uint64
	if o.UntilCaughtUp {
		for _, subj := range subs {
			m, err := stream.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			endSeq = max(endSeq, m.Sequence)
		}
	}
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan Event, o.Buffer)
	sub := &Subscription{C: out, cancel: cancel, done: make(chan struct{})}
	if o.UntilCaughtUp && endSeq < next {
		cancel()
		close(out)
		close(sub.done)
		return sub, nil
	}
	r := &reader{js: b.js, stream: stream, subjects: subs, batch: o.Buffer, next: next}
	if err := r.open(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	go func() {
		defer close(sub.done)
		defer close(out)
		defer cancel()
		defer r.close()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		// Events dropped by retention before we could read them.
		if !o.FromNow && o.After > 0 && info.FirstSeq > next {
			data, _ := json.Marshal(map[string]uint64{"from_seq": next, "to_seq": info.FirstSeq - 1})
			if !send(Event{Type: GapType, Time: time.Now().UTC(), Data: data}) {
				return
			}
		}
		err := r.run(ctx, func(ev Event) bool {
			if !send(ev) {
				return false
			}
			return !(o.UntilCaughtUp && ev.Seq >= endSeq)
		})
		if ctx.Err() == nil {
			sub.err = err
		}
	}()
	return sub, nil
}

// reader pulls events from an ephemeral consumer in batches. It tracks the
// next stream sequence itself, so when the consumer is lost (deleted for
// inactivity while the reader was blocked, or after a reconnect) it makes a
// new one that starts exactly there.
type reader struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	subjects []string
	batch    int
	next     uint64 // next stream sequence to deliver
	cons     jetstream.Consumer
	lastCons uint64 // consumer sequence of the last message, to detect gaps
}

func (r *reader) open(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		FilterSubjects:    r.subjects,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(r.next, 1),
		InactiveThreshold: 5 * time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if r.next == 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverNewPolicy, 0
	}
	cons, err := r.stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	r.cons, r.lastCons = cons, 0
	return nil
}

func (r *reader) close() {
	if r.cons == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.stream.DeleteConsumer(ctx, r.cons.CachedInfo().Name)
}

// run delivers events to deliver until it returns false or ctx is done.
func (r *reader) run(ctx context.Context, deliver func(Event) bool) error {
	failures := 0
	for ctx.Err() == nil {
		// A pull request waits up to 10s for events, then is renewed.
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		batch, err := r.cons.Fetch(r.batch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if failures++; failures > 5 {
				return fmt.Errorf("event subscription: %w", err)
			}
			if rerr := r.reopen(ctx); rerr != nil {
				return fmt.Errorf("event subscription: %w", err)
			}
			continue
		}
		for msg := range batch.Messages() {
			failures = 0
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if meta.Sequence.Consumer != r.lastCons+1 {
				// Messages went missing between server and client: start
				// over from the last one delivered.
				r.reopen(ctx)
				break
			}
			r.lastCons = meta.Sequence.Consumer
			r.next = meta.Sequence.Stream + 1
			var ev Event
			if json.Unmarshal(msg.Data(), &ev) != nil {
				continue // not an oxios event; nothing to deliver
			}
			ev.Seq = meta.Sequence.Stream
			if !deliver(ev) {
				cancel()
				return nil
			}
		}
		err = batch.Error()
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			if failures++; failures > 5 {
				return fmt.Errorf("event subscription: %w", err)
			}
			if rerr := r.reopen(ctx); rerr != nil {
				return fmt.Errorf("event subscription: %w", err)
			}
		}
	}
	return nil
}

func (r *reader) reopen(ctx context.Context) error {
	r.close()
	var err error
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		if err = r.open(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}
