package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

func open(t testing.TB) *Bus {
	t.Helper()
	bb := backbonetest.Start(t, "1s")
	b, err := Open(context.Background(), bb.JS, Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func publish(t testing.TB, b *Bus, typ, agent string, i int) Event {
	t.Helper()
	ev, err := b.Publish(context.Background(), Event{Type: typ, AgentID: agent, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func recv(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return Event{}
}

func TestPublishEnvelope(t *testing.T) {
	b := open(t)
	ev := publish(t, b, "agent.started", "a1", 0)
	if ev.Seq != 1 || ev.ID == "" || ev.Node != "n1" || ev.Time.IsZero() {
		t.Fatalf("envelope: %+v", ev)
	}
	for _, bad := range []Event{{Type: "Agent.started"}, {Type: "agent"}, {Type: "agent.started", AgentID: "a b"}, {Type: "x.y", Data: json.RawMessage(`{`)}} {
		if _, err := b.Publish(context.Background(), bad); !errors.As(err, new(*InvalidError)) {
			t.Errorf("publish %+v: %v, want invalid", bad, err)
		}
	}
}

func TestFilters(t *testing.T) {
	b := open(t)
	publish(t, b, "agent.started", "a1", 1)
	publish(t, b, "agent.exited", "a2", 2)
	publish(t, b, "tool.finished", "a1", 3)
	publish(t, b, "custom.ping", "", 4)
	for _, c := range []struct {
		f    Filter
		want []uint64
	}{
		{Filter{}, []uint64{1, 2, 3, 4}},
		{Filter{Types: []string{"agent.*"}}, []uint64{1, 2}},
		{Filter{Types: []string{"agent"}}, []uint64{1, 2}},
		{Filter{Types: []string{"*.finished", "custom.ping"}}, []uint64{3, 4}},
		{Filter{Agent: "a1"}, []uint64{1, 3}},
		{Filter{Types: []string{"agent.*"}, Agent: "a1"}, []uint64{1}},
		{Filter{Types: []string{"*", "agent.started"}}, []uint64{1, 2, 3, 4}},
	} {
		s, err := b.Subscribe(context.Background(), c.f, SubscribeOptions{UntilCaughtUp: true})
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for ev := range s.C {
			got = append(got, ev.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("filter %+v: got %v, want %v", c.f, got, c.want)
		}
	}
	for _, bad := range []Filter{{Types: []string{"Agent.*"}}, {Types: []string{"a.b.c"}}, {Agent: "x y"}, {Types: []string{"agent.>x"}}} {
		if err := ValidateFilter(bad); !errors.As(err, new(*InvalidError)) {
			t.Errorf("filter %+v: %v, want invalid", bad, err)
		}
	}
	// Caught up with nothing to deliver: ends at once.
	s, _ := b.Subscribe(context.Background(), Filter{Types: []string{"nothing.here"}}, SubscribeOptions{UntilCaughtUp: true})
	if _, ok := <-s.C; ok {
		t.Fatal("delivered an event that does not match")
	}
}

// A subscriber that starts from a sequence while publishers keep going sees
// every event after it exactly once, in order: replay runs into live.
func TestReplayThenLiveNoGapNoDuplicate(t *testing.T) {
	b := open(t)
	const before, during = 500, 2000
	for i := 0; i < before; i++ {
		publish(t, b, "test.storm", "", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const from = 123
	s, err := b.Subscribe(ctx, Filter{}, SubscribeOptions{After: from, Buffer: 16})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < during/4; i++ {
				if _, err := b.Publish(ctx, Event{Type: "test.storm"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	want := uint64(from + 1)
	for want <= before+during {
		ev := recv(t, s)
		if ev.Seq != want {
			t.Fatalf("got seq %d, want %d (gap or duplicate)", ev.Seq, want)
		}
		want++
	}
	wg.Wait()
	s.Close()
}

// A subscriber that does not read does not hold publishers up, and loses
// nothing: when it reads again, every event is there.
func TestSlowSubscriberNeitherBlocksNorLoses(t *testing.T) {
	b := open(t)
	s, err := b.Subscribe(context.Background(), Filter{}, SubscribeOptions{FromNow: true, Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			publish(t, b, "test.flood", "", i)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("publishers were blocked by a subscriber that does not read")
	}
	for i := 1; i <= n; i++ {
		if ev := recvN(t, s, i); ev.Seq != uint64(i) {
			t.Fatalf("got %d, want %d", ev.Seq, i)
		}
	}
}

func TestGapAfterRetention(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	// A tiny log: the oldest events are dropped as new ones come.
	b, err := Open(context.Background(), bb.JS, Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 100; i++ {
		publish(t, b, "test.fill", "", i)
	}
	s, err := b.Subscribe(context.Background(), Filter{}, SubscribeOptions{After: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gap := recv(t, s)
	var d map[string]uint64
	json.Unmarshal(gap.Data, &d)
	if gap.Type != GapType || d["from_seq"] != 3 || d["to_seq"] < 3 {
		t.Fatalf("first event %+v %v, want a gap from 3", gap, d)
	}
	if next := recv(t, s); next.Seq != d["to_seq"]+1 {
		t.Fatalf("after the gap got %d, want %d", next.Seq, d["to_seq"]+1)
	}
}

func recvN(t *testing.T, s *Subscription, i int) Event {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatalf("subscription ended at %d: %v", i, s.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %d within 10s", i)
	}
	return Event{}
}

func TestLiveFilters(t *testing.T) {
	b := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := b.Subscribe(ctx, Filter{Types: []string{"agent.*"}, Agent: "a1"}, SubscribeOptions{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := b.Subscribe(ctx, Filter{}, SubscribeOptions{FromNow: true})
	publish(t, b, "agent.started", "a2", 1)
	publish(t, b, "tool.finished", "a1", 2)
	want := publish(t, b, "agent.exited", "a1", 3)
	if ev := recv(t, s); ev.Seq != want.Seq {
		t.Fatalf("filtered live subscriber got %+v, want seq %d", ev, want.Seq)
	}
	for i := 1; i <= 3; i++ {
		if ev := recv(t, all); ev.Seq != uint64(i) {
			t.Fatalf("unfiltered got %d, want %d", ev.Seq, i)
		}
	}
}

func TestMatchSubject(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"oxios.evt.agent.*.*", "oxios.evt.agent.started.a1", true},
		{"oxios.evt.agent.*.a1", "oxios.evt.agent.started.a2", false},
		{"oxios.evt.*.finished.*", "oxios.evt.tool.finished.-", true},
		{"oxios.evt.>", "oxios.evt.x.y.z", true},
		{"oxios.evt.agent.*", "oxios.evt.agent.started.a1", false},
		{"oxios.evt.agent.started.a1.x", "oxios.evt.agent.started.a1", false},
	} {
		if got := matchSubject(c.p, c.s); got != c.want {
			t.Errorf("matchSubject(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// A live subscriber that falls behind while retention drops the events it
// missed is told so with a gap event; it never silently skips.
func TestLaggingSubscriberMeetsRetention(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	b, err := Open(context.Background(), bb.JS, Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.Subscribe(context.Background(), Filter{}, SubscribeOptions{FromNow: true, Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 300; i++ {
		publish(t, b, "test.fill", "", i)
	}
	var last uint64
	sawGap := false
	for last < 300 {
		ev := recv(t, s)
		if ev.Type == GapType {
			var d map[string]uint64
			json.Unmarshal(ev.Data, &d)
			if d["from_seq"] != last+1 {
				t.Fatalf("gap from %d, want %d", d["from_seq"], last+1)
			}
			last, sawGap = d["to_seq"], true
			continue
		}
		if ev.Seq != last+1 {
			t.Fatalf("silent gap: %d after %d", ev.Seq, last)
		}
		last = ev.Seq
	}
	if !sawGap {
		t.Fatal("retention dropped events the subscriber missed, but no gap was reported")
	}
}

func TestCloseEndsLiveSubscriptions(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	b, err := Open(context.Background(), bb.JS, Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(context.Background(), Filter{}, SubscribeOptions{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	select {
	case _, ok := <-s.C:
		if ok {
			t.Fatal("got an event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a live subscription did not end when the bus closed")
	}
}

// UntilCaughtUp delivers exactly the stored matching events, and ends even
// when the newest of them has been dropped meanwhile.
func TestUntilCaughtUpExact(t *testing.T) {
	b := open(t)
	for i := 0; i < 5; i++ {
		publish(t, b, "test.a", "", i)
		publish(t, b, "test.b", "", i)
	}
	s, err := b.Subscribe(context.Background(), Filter{Types: []string{"test.a"}}, SubscribeOptions{UntilCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "test.a", "", 99) // after the start: not part of the answer
	n := 0
	for ev := range s.C {
		if ev.Type != "test.a" || ev.Seq > 10 {
			t.Fatalf("unexpected %+v", ev)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("got %d events, want 5", n)
	}
}
