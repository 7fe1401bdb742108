package budget

import (
	"slices"
	"sort"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

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
