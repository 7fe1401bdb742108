package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Subscription delivers events in sequence order.
type Subscription struct {
	// C delivers the events; it is closed when the subscription ends.
	C <-chan Event
	// After is the sequence the subscription starts after: every matching
	// event with a higher sequence is delivered. A client that must resume
	// later without having seen an event resumes from here.
	After  uint64
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Close ends the subscription and waits for its goroutines.
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
	// FromNow starts at the live position: the events published from now
	// on (and any stored just before that the live reader had not yet
	// handed out). Subscription.After says exactly where it starts.
	FromNow bool
	// UntilCaughtUp ends the subscription once it has delivered every
	// matching event stored when it started, instead of going on live.
	UntilCaughtUp bool
	// Buffer is the capacity of C (default 256).
	Buffer int
}

// Subscribe delivers the matching events from the chosen start, then live,
// with no gap and no duplicate, and never blocks publishers.
//
// Live subscriptions share one reader of the log, which hands each event to
// every matching subscriber in memory. A subscriber that falls behind (its
// channel is full) is moved, at the exact event it missed, to a reader of
// its own that pulls from the durable log at its pace. Subscriptions that
// start in the past use their own reader from the start. If events asked
// for were dropped by retention, the first event is a GapType event
// saying which.
func (b *Bus) Subscribe(ctx context.Context, f Filter, o SubscribeOptions) (*Subscription, error) {
	subjects, err := f.subjects()
	if err != nil {
		return nil, err
	}
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan Event, o.Buffer)
	sub := &Subscription{C: out, cancel: cancel, done: make(chan struct{})}
	ls := &liveSub{subjects: subjects, out: out, ctx: ctx}

	if o.FromNow && !o.UntilCaughtUp {
		after, err := b.tail.add(ls)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		sub.After = after
		go func() {
			defer close(sub.done)
			defer close(out)
			defer cancel()
			var from uint64
			select {
			case <-ctx.Done():
				b.tail.remove(ls)
				return
			case <-b.tail.closing:
				return
			case from = <-ls.lagged:
			}
			// Too slow for the shared reader: continue from the log.
			sub.err = b.pull(ctx, subjects, from, 0, out)
		}()
		return sub, nil
	}

	stream, err := b.js.Stream(ctx, Stream)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	info := stream.CachedInfo().State
	next := o.After + 1
	switch {
	case o.FromNow:
		next = info.LastSeq + 1
	case o.After == 0:
		// "From the oldest event": what retention dropped was not asked for.
		next = max(1, info.FirstSeq)
	}
	sub.After = next - 1
	// endSeq is the last stored event that matches, for UntilCaughtUp.
	var endSeq uint64
	if o.UntilCaughtUp {
		for _, subj := range subjects {
			m, err := stream.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				cancel()
				return nil, err
			}
			endSeq = max(endSeq, m.Sequence)
		}
		if endSeq < next {
			cancel()
			close(out)
			close(sub.done)
			return sub, nil
		}
	}
	go func() {
		defer close(sub.done)
		defer close(out)
		defer cancel()
		sub.err = b.pull(ctx, subjects, next, endSeq, out)
	}()
	return sub, nil
}

// pull delivers matching events from sequence next on, from a reader of its
// own, until ctx is done (or, with endSeq > 0, after the event at endSeq).
func (b *Bus) pull(ctx context.Context, subjects []string, next, endSeq uint64, out chan<- Event) error {
	stream, err := b.js.Stream(ctx, Stream)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	r := &reader{stream: stream, subjects: subjects, batch: cap(out), next: next}
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	r.onGap = func(from, to uint64) bool { return send(gapEvent(from, to)) }
	if endSeq > 0 {
		// Everything asked for is stored: a pull that finds nothing means
		// the rest was dropped by retention.
		r.idleEnds = true
	}
	if err := r.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer r.close()
	err = r.run(ctx, func(ev Event, _ string, pending uint64) bool {
		if endSeq > 0 && ev.Seq > endSeq {
			return false
		}
		if !send(ev) {
			return false
		}
		return endSeq == 0 || (ev.Seq < endSeq && pending > 0)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// gapEvent says that the events from..to may be lost to retention.
func gapEvent(from, to uint64) Event {
	data, _ := json.Marshal(map[string]uint64{"from_seq": from, "to_seq": to})
	return Event{Type: GapType, Time: time.Now().UTC(), Data: data}
}

// liveSub is a subscriber fed by the shared tail reader.
type liveSub struct {
	subjects []string
	out      chan<- Event
	ctx      context.Context
	// lagged receives the sequence of the first event the subscriber could
	// not take; after that the tail no longer feeds it.
	lagged chan uint64
}

// tail is the one reader of the log that feeds every live subscriber. It
// starts with the first live subscriber, so a bus nobody listens to live
// spends nothing on reading its own log.
type tail struct {
	js jetstream.JetStream

	mu      sync.Mutex
	subs    map[*liveSub]bool
	running bool
	pos     uint64 // sequence of the last event handed out
	closed  bool

	// closing is closed by Close: live subscriptions end.
	closing chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newTail(js jetstream.JetStream) *tail {
	ctx, cancel := context.WithCancel(context.Background())
	return &tail{js: js, subs: map[*liveSub]bool{}, closing: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// start begins reading after the newest stored event. Called with t.mu held.
func (t *tail) start() error {
	stream, err := t.js.Stream(t.ctx, Stream)
	if err != nil {
		return err
	}
	r := &reader{stream: stream, subjects: []string{subjectPrefix + ">"}, batch: 1024, next: stream.CachedInfo().State.LastSeq + 1}
	r.onGap = t.gap
	if err := r.open(t.ctx); err != nil {
		return fmt.Errorf("event tail: %w", err)
	}
	t.running = true
	t.pos = r.next - 1
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer r.close()
		r.follow(t.ctx, t.fanOut)
		// The tail stopped (closed, or the backbone failed it). Subscribers
		// still here have had every event before r.next: each continues
		// from there with a reader of its own.
		t.mu.Lock()
		defer t.mu.Unlock()
		t.running = false
		for s := range t.subs {
			delete(t.subs, s)
			if !t.closed { // on Close they end instead
				s.lagged <- r.next
			}
		}
	}()
	return nil
}

// add registers a live subscriber; it receives every event after the
// returned sequence.
func (t *tail) add(s *liveSub) (after uint64, err error) {
	s.lagged = make(chan uint64, 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errors.New("the event bus is closed")
	}
	if !t.running {
		if err := t.start(); err != nil {
			return 0, err
		}
	}
	t.subs[s] = true
	return t.pos, nil
}

func (t *tail) remove(s *liveSub) {
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
}

// fanOut hands an event to every matching subscriber without ever
// waiting: a subscriber whose channel is full is detached and told where
// to continue from the log.
func (t *tail) fanOut(ev Event, subject string, _ uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pos = ev.Seq
	for s := range t.subs {
		if s.ctx.Err() != nil {
			delete(t.subs, s)
			continue
		}
		if !matchAny(s.subjects, subject) {
			continue
		}
		select {
		case s.out <- ev:
		default:
			delete(t.subs, s)
			s.lagged <- ev.Seq
		}
	}
	return true
}

// gap tells every subscriber that events from..to may be lost. One that
// cannot take it now continues from the log at from, where its own reader
// finds and reports the same gap.
func (t *tail) gap(from, to uint64) bool {
	ev := gapEvent(from, to)
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		select {
		case s.out <- ev:
		default:
			delete(t.subs, s)
			s.lagged <- from
		}
	}
	return true
}

func (t *tail) stop() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.closing)
	}
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// matchAny reports whether subject matches one of the NATS subject
// patterns (tokens separated by '.', '*' matching one token).
func matchAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if matchSubject(p, subject) {
			return true
		}
	}
	return false
}

func matchSubject(pattern, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subject, ".")
		if pt == ">" {
			return true
		}
		if pt != "*" && pt != st {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}
