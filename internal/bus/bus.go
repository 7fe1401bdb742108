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
// the subscription reads from the durable log at its own pace. If events it
// asked for were dropped by retention, it first delivers one GapType event
// saying which.
func (b *Bus) Subscribe(ctx context.Context, f Filter, o SubscribeOptions) (*Subscription, error) {
	subs, err := f.subjects()
	if err != nil {
		return nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subs, InactiveThreshold: time.Minute}
	switch {
	case o.FromNow:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case o.After > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = o.After + 1
	default:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := b.js.OrderedConsumer(ctx, Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// firstSeq tells whether retention dropped events we were asked for;
	// endSeq is the last stored event that matches, for UntilCaughtUp.
	var firstSeq, endSeq uint64
	if !o.FromNow || o.UntilCaughtUp {
		stream, err := b.js.Stream(ctx, Stream)
		if err != nil {
			return nil, err
		}
		firstSeq = stream.CachedInfo().State.FirstSeq
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
	}
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan Event, o.Buffer)
	sub := &Subscription{C: out, cancel: cancel, done: make(chan struct{})}

	if o.UntilCaughtUp && (o.FromNow || endSeq <= o.After) {
		close(out)
		close(sub.done)
		return sub, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(o.Buffer))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	go func() {
		defer close(sub.done)
		defer close(out)
		defer cancel()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		// Events dropped by retention before we could read them.
		if !o.FromNow && firstSeq > o.After+1 && o.After > 0 {
			data, _ := json.Marshal(map[string]uint64{"from_seq": o.After + 1, "to_seq": firstSeq - 1})
			if !send(Event{Type: GapType, Time: time.Now().UTC(), Data: data}) {
				return
			}
		}
		for {
			msg, err := it.Next()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					sub.err = err
				}
				return
			}
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			var ev Event
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				continue // not an oxios event; nothing to deliver
			}
			ev.Seq = meta.Sequence.Stream
			if !send(ev) {
				return
			}
			if o.UntilCaughtUp && ev.Seq >= endSeq {
				return
			}
		}
	}()
	return sub, nil
}
