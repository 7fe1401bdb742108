package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscription delivers events in sequence order.
type Subscription struct {
	// C delivers the events; it is closed when the subscription ends.
	C      <-chan Event
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
	// FromNow starts with the next event published.
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
		if err := b.tail.add(ls); err != nil {
			cancel()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		go func() {
			defer close(sub.done)
			defer close(out)
			defer cancel()
			var from uint64
			select {
			case <-ctx.Done():
				b.tail.remove(ls)
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
	if o.FromNow {
		next = info.LastSeq + 1
	}
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
		// Events dropped by retention before we could read them.
		if !o.FromNow && o.After > 0 && info.FirstSeq > next {
			data, _ := json.Marshal(map[string]uint64{"from_seq": next, "to_seq": info.FirstSeq - 1})
			select {
			case out <- Event{Type: GapType, Time: time.Now().UTC(), Data: data}:
			case <-ctx.Done():
				return
			}
		}
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
	if err := r.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer r.close()
	err = r.run(ctx, func(ev Event, _ string) bool {
		select {
		case out <- ev:
		case <-ctx.Done():
			return false
		}
		return endSeq == 0 || ev.Seq < endSeq
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
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
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newTail(js jetstream.JetStream) *tail {
	ctx, cancel := context.WithCancel(context.Background())
	return &tail{js: js, subs: map[*liveSub]bool{}, ctx: ctx, cancel: cancel}
}

// start begins reading after the newest stored event. Called with t.mu held.
func (t *tail) start() error {
	stream, err := t.js.Stream(t.ctx, Stream)
	if err != nil {
		return err
	}
	r := &reader{stream: stream, subjects: []string{subjectPrefix + ">"}, batch: 1024, next: stream.CachedInfo().State.LastSeq + 1}
	if err := r.open(t.ctx); err != nil {
		return fmt.Errorf("event tail: %w", err)
	}
	t.running = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer r.close()
		r.follow(t.ctx, t.fanOut)
		t.mu.Lock()
		t.running = false
		t.mu.Unlock()
	}()
	return nil
}

// add registers a live subscriber; it receives every event the tail reads
// from now on.
func (t *tail) add(s *liveSub) error {
	s.lagged = make(chan uint64, 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("the event bus is closed")
	}
	if !t.running {
		if err := t.start(); err != nil {
			return err
		}
	}
	t.subs[s] = true
	return nil
}

func (t *tail) remove(s *liveSub) {
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
}

// fanOut hands an event to every matching subscriber without ever
// waiting: a subscriber whose channel is full is detached and told where
// to continue from the log.
func (t *tail) fanOut(ev Event, subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
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
}

func (t *tail) stop() {
	t.mu.Lock()
	t.closed = true
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

// reader pulls events from an ephemeral consumer in batches. It tracks the
// next stream sequence itself, so when the consumer is lost (deleted for
// inactivity while the reader was blocked, or after a reconnect) it makes a
// new one that starts exactly there.
type reader struct {
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
		OptStartSeq:       r.next,
		InactiveThreshold: 5 * time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
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
func (r *reader) run(ctx context.Context, deliver func(ev Event, subject string) bool) error {
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
			if !deliver(ev, msg.Subject()) {
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

// follow is run for a deliver function that never blocks (the tail): it
// keeps pull requests flowing continuously, so no event waits for a new
// batch to be requested.
func (r *reader) follow(ctx context.Context, deliver func(ev Event, subject string)) error {
	failures := 0
	for ctx.Err() == nil {
		it, err := r.cons.Messages(jetstream.PullMaxMessages(r.batch))
		if err != nil {
			if failures++; failures > 5 {
				return fmt.Errorf("event tail: %w", err)
			}
			if rerr := r.reopen(ctx); rerr != nil {
				return fmt.Errorf("event tail: %w", err)
			}
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			msg, err := it.Next()
			if err != nil {
				break
			}
			failures = 0
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if meta.Sequence.Consumer != r.lastCons+1 {
				break // delivery gap: start over from the last event delivered
			}
			r.lastCons = meta.Sequence.Consumer
			r.next = meta.Sequence.Stream + 1
			var ev Event
			if json.Unmarshal(msg.Data(), &ev) != nil {
				continue
			}
			ev.Seq = meta.Sequence.Stream
			deliver(ev, msg.Subject())
		}
		stop()
		it.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if err := r.reopen(ctx); err != nil {
			return fmt.Errorf("event tail: %w", err)
		}
	}
	return nil
}
