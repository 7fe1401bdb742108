// Package bus is the durable event log: events are published to a
// JetStream stream with a sequence number, and subscribers receive them
// live, from a given sequence, or both, filtered by type and agent.
package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/metrics"
)

// Stream is the JetStream stream that holds the events.
const Stream = "OXIOS_EVENTS"

const subjectPrefix = "oxios.evt."

// Event is the envelope of every event.
type Event = oxios.Event

// GapType is the type of the synthetic event of a gap (see oxios).
const GapType = oxios.GapType

// InvalidError is bad input; Field names what is wrong.
type InvalidError = oxios.InvalidError

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
	tail *tail
	rate rate
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
	return &Bus{js: js, node: o.Node, tail: newTail(js)}, nil
}

// Close stops delivering live events; subscriptions end.
func (b *Bus) Close() { b.tail.stop() }

// Publish stores an event and returns it with its sequence, id and time set.
// Type must be valid; AgentID is optional. It returns once the event is
// durable in the log (acknowledged by JetStream).
func (b *Bus) Publish(ctx context.Context, ev Event) (Event, error) {
	evs, err := b.PublishBatch(ctx, []Event{ev})
	if err != nil {
		return ev, err
	}
	return evs[0], nil
}

// PublishOnce stores ev unless an event with the same key was stored in
// the last two minutes (the stream's duplicate window): several nodes
// that see one fact (a node gone dead) publish it once between them.
func (b *Bus) PublishOnce(ctx context.Context, ev Event, key string) (Event, error) {
	subjects, payloads, out, err := b.prepare([]Event{ev})
	if err != nil {
		return ev, err
	}
	fut, err := b.js.PublishAsync(subjects[0], payloads[0], jetstream.WithMsgID(key))
	if err != nil {
		return ev, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	p := Pending{ev: out[0], fut: fut}
	return p.Wait(ctx)
}

// MaxBatch is the most events PublishBatch takes at once.
const MaxBatch = 1000

// PublishBatch stores several events, in order, pipelined: it returns once
// every one is durable. All are validated first, so bad input stores none.
func (b *Bus) PublishBatch(ctx context.Context, evs []Event) ([]Event, error) {
	if len(evs) > MaxBatch {
		return nil, &InvalidError{Field: "events", Msg: fmt.Sprintf("at most %d events at once (got %d)", MaxBatch, len(evs))}
	}
	subjects, payloads, out, err := b.prepare(evs)
	if err != nil {
		return nil, err
	}
	// Asynchronous publishes with a wait for their own acks: publishers
	// share one reply subscription and pipeline their messages, and each
	// call still returns only once its events are stored.
	futs := make([]jetstream.PubAckFuture, len(evs))
	for i := range evs {
		fut, err := b.js.PublishAsync(subjects[i], payloads[i])
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", out[i].Type, err)
		}
		futs[i] = fut
	}
	for i, fut := range futs {
		p := Pending{ev: out[i], fut: fut}
		if out[i], err = p.Wait(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Pending is an event handed to the log whose storing is not yet
// confirmed.
type Pending struct {
	ev  Event
	fut jetstream.PubAckFuture
}

// Wait returns the event, with its sequence, once it is stored.
func (p *Pending) Wait(ctx context.Context) (Event, error) {
	select {
	case ack := <-p.fut.Ok():
		p.ev.Seq = ack.Sequence
		return p.ev, nil
	case err := <-p.fut.Err():
		return p.ev, fmt.Errorf("publish %s: %w", p.ev.Type, err)
	case <-ctx.Done():
		return p.ev, fmt.Errorf("publish %s: %w", p.ev.Type, ctx.Err())
	}
}

// PublishAsync hands an event to the log and returns without waiting for
// it to be stored; Pending.Wait does. Events handed over by one goroutine
// are stored in that order, and before any it publishes afterwards.
func (b *Bus) PublishAsync(ev Event) (*Pending, error) {
	_, payloads, out, err := b.prepare([]Event{ev})
	if err != nil {
		return nil, err
	}
	agent := out[0].AgentID
	if agent == "" {
		agent = "-"
	}
	fut, err := b.js.PublishAsync(subjectPrefix+out[0].Type+"."+agent, payloads[0])
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", out[0].Type, err)
	}
	return &Pending{ev: out[0], fut: fut}, nil
}

// prepare validates events, stamps them and returns their subjects and
// payloads.
func (b *Bus) prepare(evs []Event) (subjects []string, payloads [][]byte, out []Event, err error) {
	subjects = make([]string, len(evs))
	payloads = make([][]byte, len(evs))
	out = make([]Event, len(evs))
	for i, ev := range evs {
		if err := ValidateType(ev.Type); err != nil {
			return nil, nil, nil, err
		}
		if ev.AgentID != "" {
			if err := ValidateAgent(ev.AgentID); err != nil {
				return nil, nil, nil, err
			}
		}
		if ev.Data != nil && !json.Valid(ev.Data) {
			return nil, nil, nil, &InvalidError{Field: "data", Msg: "must be valid JSON"}
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, nil, nil, err
		}
		ev.Seq, ev.ID, ev.Time, ev.Node = 0, id.String(), time.Now().UTC(), b.node
		if payloads[i], err = json.Marshal(ev); err != nil {
			return nil, nil, nil, err
		}
		agent := ev.AgentID
		if agent == "" {
			agent = "-"
		}
		subjects[i] = subjectPrefix + ev.Type + "." + agent
		out[i] = ev
	}
	b.rate.add(time.Now(), len(evs))
	metrics.EventsPublished.Add(float64(len(evs)))
	return subjects, payloads, out, nil
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
