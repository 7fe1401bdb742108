package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// reader pulls events from an ephemeral consumer in batches. It tracks the
// next stream sequence itself, so when the consumer is lost (deleted for
// inactivity while the reader was blocked, or after a reconnect) it makes a
// new one that starts exactly there. If retention has dropped events from
// there on, it reports the gap through onGap before going on.
type reader struct {
	stream   jetstream.Stream
	subjects []string
	batch    int
	next     uint64 // next stream sequence to deliver
	cons     jetstream.Consumer
	lastCons uint64 // consumer sequence of the last message, to detect gaps
	// onGap is told of events (from..to) dropped before they were read; it
	// returns false to stop.
	onGap func(from, to uint64) bool
	// gapFrom..gapTo is a gap found at open, not yet reported.
	gapFrom, gapTo uint64
	// idleEnds ends run when a pull finds nothing (all wanted is stored).
	idleEnds bool
}

// deliverFunc takes an event, its subject, and how many matching events
// are still stored after it; it returns false to stop.
type deliverFunc func(ev Event, subject string, pending uint64) bool

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
	// The consumer starts at the oldest stored event if r.next is gone.
	info, err := r.stream.Info(ctx)
	if err != nil {
		return err
	}
	if first := info.State.FirstSeq; first > r.next {
		r.gapFrom, r.gapTo = r.next, first-1
		r.next = first
	}
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

// reportGap hands a pending gap to onGap; false means stop.
func (r *reader) reportGap() bool {
	if r.gapFrom == 0 {
		return true
	}
	from, to := r.gapFrom, r.gapTo
	r.gapFrom, r.gapTo = 0, 0
	if r.onGap == nil {
		return true
	}
	return r.onGap(from, to)
}

// take checks one message and turns it into an event. ok is false when the
// message is not an event; lost is true when messages went missing between
// server and client (the caller starts over from r.next). A message past
// r.next may mean retention dropped events before they were read: that is
// recorded as a gap for reportGap.
func (r *reader) take(ctx context.Context, msg jetstream.Msg) (ev Event, pending uint64, ok, lost bool) {
	meta, err := msg.Metadata()
	if err != nil {
		return ev, 0, false, false
	}
	if meta.Sequence.Consumer != r.lastCons+1 {
		return ev, 0, false, true
	}
	r.lastCons = meta.Sequence.Consumer
	if seq := meta.Sequence.Stream; seq > r.next {
		r.checkSkipped(ctx, seq)
	}
	r.next = meta.Sequence.Stream + 1
	if json.Unmarshal(msg.Data(), &ev) != nil {
		return ev, meta.NumPending, false, false // not an oxios event
	}
	ev.Seq = meta.Sequence.Stream
	return ev, meta.NumPending, true, false
}

// checkSkipped decides whether the stream events r.next..seq-1, which the
// consumer passed over, were lost rather than filtered out. Retention drops
// events from the front only, so they were lost exactly when the stream's
// first sequence has moved past r.next.
func (r *reader) checkSkipped(ctx context.Context, seq uint64) {
	to := seq - 1
	if !r.unfiltered() {
		info, err := r.stream.Info(ctx)
		if err != nil {
			return
		}
		if info.State.FirstSeq <= r.next {
			return // all there: the consumer skipped what does not match
		}
		to = min(to, info.State.FirstSeq-1)
	}
	r.gapFrom, r.gapTo = r.next, to
}

// unfiltered reports whether the reader reads every event, so that any
// jump in the stream sequence is a loss.
func (r *reader) unfiltered() bool {
	return len(r.subjects) == 1 && (r.subjects[0] == subjectPrefix+">" || r.subjects[0] == subjectPrefix+"*.*.*")
}

// run delivers events until deliver returns false or ctx is done. It keeps
// at most one batch in flight, so a slow deliver holds nothing up but itself.
func (r *reader) run(ctx context.Context, deliver deliverFunc) error {
	failures := 0
	wait := oxios.FetchWait
	if r.idleEnds {
		wait = 2 * time.Second
	}
	for ctx.Err() == nil {
		if !r.reportGap() {
			return nil
		}
		fctx, cancel := context.WithTimeout(ctx, wait)
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
		got := 0
		for msg := range batch.Messages() {
			failures = 0
			got++
			ev, pending, ok, lost := r.take(ctx, msg)
			if lost {
				r.reopen(ctx) // start over from the last one delivered
				break
			}
			if !r.reportGap() || (ok && !deliver(ev, msg.Subject(), pending)) {
				cancel()
				return nil
			}
		}
		err = batch.Error()
		cancel()
		if got == 0 && r.idleEnds && ctx.Err() == nil {
			return nil
		}
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

// follow is run for a deliver function that never blocks (the tail): it
// keeps pull requests flowing continuously, so no event waits for a new
// batch to be requested.
func (r *reader) follow(ctx context.Context, deliver deliverFunc) error {
	failures := 0
	for ctx.Err() == nil {
		if !r.reportGap() {
			return nil
		}
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
			ev, pending, ok, lost := r.take(ctx, msg)
			if lost {
				break // start over from the last one delivered
			}
			r.reportGap()
			if ok {
				deliver(ev, msg.Subject(), pending)
			}
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
