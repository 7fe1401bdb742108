package budget

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// Reservations make budgets hold under concurrency, on one node or many.
// Before each model call, the run reserves an estimate of it (one call,
// its max_tokens plus its prompt, and their price) in every budget it is
// under: in one key per budget, "res.<name>", by compare-and-set, so that
// concurrent calls on any nodes see each other's. A call is admitted
// while its budget's calls, used and reserved, leave room for one more,
// and its tokens and cost, used and reserved, are under their limits.
// After the call its real usage is spent and stored (Sync), and only then
// is its reservation released. So a limit of one call admits exactly one,
// and tokens and cost overshoot a limit by at most what the calls in
// flight use beyond their estimates: at most one call per agent.

// reservation is one model call in flight.
type reservation struct {
	ID    string    `json:"id"`
	Node  string    `json:"node"`
	Agent string    `json:"agent"`
	Usage           // the estimate
	Until time.Time `json:"until"` // a call still in flight after this is forgotten
}

type reservations struct {
	Items []reservation `json:"items"`
}

// reserveFor bounds how long a reservation holds: a node that dies during
// a call leaves it behind, and it is forgotten after this.
const reserveFor = 10 * time.Minute

func resKey(name string) string { return "res." + hex.EncodeToString([]byte(name)) }

// Reserve checks the run's own limits and reserves est (one call's
// estimate) in every budget rec is under; it returns the function that
// releases the reservation, to call once the call's usage is spent and
// stored. An *Error says which budget has no room.
func (s *Service) Reserve(ctx context.Context, rec oxios.Record, used oxios.Usage, est Usage) (release func(), err error) {
	if e := checkSpec(rec.Spec, FromAgent(used)); e != nil {
		return func() {}, e
	}
	s.mu.Lock()
	var names []string
	for n := range s.defs {
		if applies(n, rec.Spec.Labels) {
			names = append(names, n)
		}
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return func() {}, nil
	}
	slices.Sort(names) // one order on every node
	r := reservation{ID: uuid.NewString(), Node: s.node, Agent: rec.ID, Usage: est, Until: s.Now().Add(reserveFor).UTC()}
	var held []string
	release = func() {
		ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
		defer cancel()
		for _, n := range held {
			if err := s.editReservations(ctx, n, func(rs *reservations) error {
				rs.Items = slices.DeleteFunc(rs.Items, func(x reservation) bool { return x.ID == r.ID })
				return nil
			}); err != nil {
				s.log.Warn("release a budget reservation (it expires by itself)", "budget", n, "err", err)
			}
		}
	}
	for _, n := range names {
		err := s.editReservations(ctx, n, func(rs *reservations) error {
			s.mu.Lock()
			b, ok := s.defs[n]
			var e *Error
			if ok {
				e = s.roomLocked(b, rs.Items, est)
			}
			s.mu.Unlock()
			if e != nil {
				return e
			}
			rs.Items = append(rs.Items, r)
			return nil
		})
		if err != nil {
			release()
			return func() {}, err
		}
		held = append(held, n)
	}
	return release, nil
}

// roomLocked says whether budget b has room for one more call estimated
// at est, with the calls in flight (items) counted; nil if it has. The
// caller holds s.mu.
func (s *Service) roomLocked(b *Budget, items []reservation, est Usage) *Error {
	now := s.Now()
	st := s.statusLocked(b, now)
	var reserved Usage
	for _, x := range items {
		if x.Until.After(now) {
			reserved.Add(x.Usage)
		}
	}
	total := st.Used
	total.Add(reserved)
	for _, m := range metrics(b.Limits, total) {
		full := m.used >= m.limit
		if m.name == "calls" {
			full = m.used+float64(est.Calls) > m.limit
		}
		if full {
			e := &Error{Budget: b.Name, Metric: m.name, Used: m.used, Limit: m.limit, Window: b.Window}
			if st.FreesAt != nil {
				e.FreesAt = *st.FreesAt
			}
			return e
		}
	}
	return nil
}

// editReservations changes budget name's reservations by compare-and-set,
// dropping the expired ones; change's error aborts the change.
func (s *Service) editReservations(ctx context.Context, name string, change func(*reservations) error) error {
	key := resKey(name)
	for attempt := 0; ; attempt++ {
		var rs reservations
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case err == nil:
			json.Unmarshal(e.Value(), &rs)
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("read the reservations of budget %s: %w", name, err)
		}
		now := s.Now()
		rs.Items = slices.DeleteFunc(rs.Items, func(x reservation) bool { return !x.Until.After(now) })
		if err := change(&rs); err != nil {
			return err
		}
		data, _ := json.Marshal(rs)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, data)
		} else {
			_, err = s.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if attempt >= 50 || !casConflict(err) {
			return fmt.Errorf("write the reservations of budget %s: %w", name, err)
		}
	}
}

// dropOwnReservations forgets what this node had reserved before it
// started again: none of its calls is in flight.
func (s *Service) dropOwnReservations(ctx context.Context) {
	lister, err := s.kv.ListKeysFiltered(ctx, "res.*")
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		name, ok := unhex(k[len("res."):])
		if !ok {
			continue
		}
		s.editReservations(ctx, name, func(rs *reservations) error {
			rs.Items = slices.DeleteFunc(rs.Items, func(x reservation) bool { return x.Node == s.node })
			return nil
		})
	}
}
