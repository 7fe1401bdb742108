package cron

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/supervisor"
)

// world is a real backbone, bus and supervisor for cron services.
type world struct {
	t   *testing.T
	js  jetstream.JetStream
	bus *bus.Bus
	sup *supervisor.Supervisor

	mu  sync.Mutex
	now time.Time
}

func newWorld(t *testing.T) *world {
	t.Helper()
	bb := backbonetest.Start(t, "1s")
	ctx := context.Background()
	b, err := bus.Open(ctx, bb.JS, bus.Options{Node: "test", MaxAge: time.Hour, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	home := t.TempDir()
	sup, err := supervisor.Open(ctx, supervisor.Options{
		JS: bb.JS, Bus: b, Scheduler: scheduler.New(scheduler.Limits{MaxRunning: 10, MaxRunningLLM: 1}), Node: "test",
		WorkspacesDir: filepath.Join(home, "ws"), LogDir: filepath.Join(home, "logs"),
		Defaults: supervisor.SpecDefaults{StopTimeout: time.Second}, Retain: 100, RetainFor: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sup.Close(ctx)
	})
	return &world{t: t, js: bb.JS, bus: b, sup: sup, now: time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)}
}

func (w *world) clock() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }
func (w *world) advance(d time.Duration) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
	return w.now
}

// open starts a cron service on the world's clock; its runner fires only
// when the test ticks it.
func (w *world) open(config ...Def) (*Service, *Runner) {
	w.t.Helper()
	return w.openAs("test", config...)
}

// openAs is open for node.
func (w *world) openAs(node string, config ...Def) (*Service, *Runner) {
	w.t.Helper()
	r := NewRunner()
	r.Now = w.clock
	r.After = func(time.Duration) <-chan time.Time { return nil }
	s, err := Open(context.Background(), Options{JS: w.js, Node: node, Agents: w.sup, Bus: w.bus,
		Defaults: supervisor.SpecDefaults{StopTimeout: time.Second}, Config: config, Runner: r})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(s.Close)
	return s, r
}

func (w *world) events(typ string) []bus.Event {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := w.bus.Subscribe(ctx, bus.Filter{Types: []string{typ}}, bus.SubscribeOptions{UntilCaughtUp: true})
	if err != nil {
		w.t.Fatal(err)
	}
	var out []bus.Event
	for ev := range sub.C {
		out = append(out, ev)
	}
	return out
}

func sleeper(secs string) supervisor.Spec {
	return supervisor.Spec{Command: "sleep", Args: []string{secs}}
}

// A job fires on its schedule and spawns its spec through the supervisor,
// labelled with the job; while that run is active, overlap "skip" skips
// the next firing (cron.skipped) and "queue" runs it once the first ends.
func TestServiceFiresAndOverlaps(t *testing.T) {
	w := newWorld(t)
	s, r := w.open()
	ctx := context.Background()
	j, err := s.Create(ctx, Def{Name: "tick", Schedule: "* * * * *", Zone: "UTC", Enabled: true, Spec: sleeper("30")})
	if err != nil {
		t.Fatal(err)
	}
	if j.NextRun == nil || !j.NextRun.Equal(time.Date(2026, 11, 26, 12, 1, 0, 0, time.UTC)) || j.Overlap != "skip" || j.Missed != "skip" || j.Source != "api" {
		t.Fatalf("%+v", j)
	}
	r.Tick(ctx, w.advance(30*time.Second))
	j, _ = s.Get("tick")
	if len(j.Recent) != 1 || j.Recent[0].Action != "run" || j.LastOutcome != "running" && j.LastOutcome != "queued" && j.LastOutcome != "starting" {
		t.Fatalf("after the first firing: %+v", j)
	}
	first := j.Recent[0].AgentID
	rec, err := w.sup.Get(first)
	if err != nil || rec.Spec.Labels[Label] != "tick" || rec.Name != "tick" {
		t.Fatalf("%+v %v", rec.Spec.Labels, err)
	}
	r.Tick(ctx, w.advance(time.Minute))
	if j, _ = s.Get("tick"); j.LastOutcome != "skipped" || len(j.Recent) != 2 {
		t.Fatalf("overlap skip: %+v", j)
	}
	if n := len(w.events("cron.fired")); n != 1 {
		t.Fatalf("%d cron.fired", n)
	}
	if evs := w.events("cron.skipped"); len(evs) != 1 || !strings.Contains(string(evs[0].Data), "overlap") {
		t.Fatalf("cron.skipped: %v", evs)
	}

	_, err = s.Create(ctx, Def{Name: "queued", Schedule: "@every 1m", Overlap: "queue", Enabled: true, Spec: sleeper("30")})
	if err != nil {
		t.Fatal(err)
	}
	r.Tick(ctx, w.advance(time.Minute))
	r.Tick(ctx, w.advance(time.Minute))
	q, _ := s.Get("queued")
	if len(q.Recent) != 2 || q.Recent[0].Action != "queue" {
		t.Fatalf("overlap queue: %+v", q.Recent)
	}
	if _, err := w.sup.Kill(ctx, q.Recent[1].AgentID, 0); err != nil {
		t.Fatal(err)
	}
	r.Tick(ctx, w.clock())
	if q, _ = s.Get("queued"); len(q.Recent) != 3 || q.Recent[0].Action != "run" || q.Recent[0].AgentID == "" {
		t.Fatalf("the queued run did not start: %+v", q.Recent)
	}
}

// TestServiceCatchesUpAfterDowntime: the state of a job survives a restart; firings missed while the daemon
// was down run once at boot with "run-once" and not at all with "skip";
// a run still active from before the restart still counts for overlap.
func TestServiceCatchesUpAfterDowntime(t *testing.T) {
	w := newWorld(t)
	s, r := w.open()
	ctx := context.Background()
	for _, d := range []Def{
		{Name: "once", Schedule: "@hourly", Missed: "run-once", Enabled: true, Spec: sleeper("0")},
		{Name: "skipper", Schedule: "@hourly", Enabled: true, Spec: sleeper("0")},
		{Name: "busy", Schedule: "@hourly", Missed: "run-once", Enabled: true, Spec: sleeper("60")},
	} {
		if _, err := s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	r.Tick(ctx, w.advance(time.Hour)) // 13:00:30: all three fire
	for _, name := range []string{"once", "skipper"} {
		j, _ := s.Get(name)
		if len(j.Recent) != 1 {
			t.Fatalf("%s: %+v", name, j.Recent)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, err := w.sup.Wait(wctx, j.Recent[0].AgentID)
		cancel()
		if err != nil || rec.State != supervisor.Succeeded {
			t.Fatalf("%s: %s %v", name, rec.State, err)
		}
	}
	s.Close()
	w.advance(3 * time.Hour) // down through 14:00, 15:00 and 16:00

	s2, _ := w.open()
	once, _ := s2.Get("once")
	if len(once.Recent) != 2 || once.Recent[0].Missed != 3 || once.Recent[0].Action != "run" {
		t.Fatalf("run-once: %+v", once.Recent)
	}
	if sk, _ := s2.Get("skipper"); len(sk.Recent) != 1 || sk.NextRun == nil || !sk.NextRun.Equal(time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC).In(time.Local)) {
		t.Fatalf("skip: %+v next %v", sk.Recent, sk.NextRun)
	}
	if busy, _ := s2.Get("busy"); len(busy.Recent) != 2 || busy.Recent[0].Action != "skip" {
		t.Fatalf("the active run from before the restart did not count: %+v", busy.Recent)
	}
}

// Bad definitions name the field; expressions the position of the error;
// config jobs cannot be changed through the API.
func TestServiceRules(t *testing.T) {
	w := newWorld(t)
	cfg := Def{Name: "nightly", Schedule: "0 3 * * *", Enabled: true, Spec: sleeper("0")}
	s, _ := w.open(cfg)
	ctx := context.Background()
	cases := []struct {
		d     Def
		field string
		msg   string
	}{
		{Def{Name: "x", Schedule: "*/5 * * 13 *", Spec: sleeper("0")}, "schedule", "at position 9"},
		{Def{Name: "x", Schedule: "@every 30s", Zone: "Mars/Olympus", Spec: sleeper("0")}, "zone", "unknown time zone"},
		{Def{Name: "x", Schedule: "@daily", Overlap: "sometimes", Spec: sleeper("0")}, "overlap", "skip, queue or allow"},
		{Def{Name: "x", Schedule: "@daily", Missed: "all", Spec: sleeper("0")}, "missed", "skip or run-once"},
		{Def{Name: "bad name", Schedule: "@daily", Spec: sleeper("0")}, "name", "letters, digits"},
		{Def{Name: "x", Schedule: "@daily", Spec: supervisor.Spec{}}, "spec.command", "must not be empty"},
		{Def{Name: "x", Schedule: "0 0 30 2 *", Spec: sleeper("0")}, "schedule", "never fires"},
		{Def{Name: "x", Schedule: "@daily", Spec: supervisor.Spec{Command: "true", Labels: map[string]string{Label: "other"}}}, "spec.labels.oxios.cron", "set by oxios"},
		{Def{Name: "x", Schedule: "@daily", Spec: supervisor.Spec{Kind: "llm", Goal: "g", Model: "openai/x"}}, "spec.kind", "not available"},
	}
	for _, c := range cases {
		_, err := s.Create(ctx, c.d)
		var inv *supervisor.InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field || !strings.Contains(inv.Msg, c.msg) {
			t.Errorf("%+v: %v", c.d, err)
		}
	}
	if _, err := s.Create(ctx, Def{Name: "nightly", Schedule: "@daily", Spec: sleeper("0")}); !errors.Is(err, supervisor.ErrConflict) {
		t.Fatalf("create over a config job: %v", err)
	}
	if err := s.Delete(ctx, "nightly"); !errors.Is(err, supervisor.ErrConflict) || !strings.Contains(err.Error(), "config file") {
		t.Fatalf("delete a config job: %v", err)
	}
	if _, err := s.SetEnabled(ctx, "nightly", false); !errors.Is(err, supervisor.ErrConflict) {
		t.Fatalf("disable a config job: %v", err)
	}
	if run, err := s.Trigger(ctx, "nightly"); err != nil || run.AgentID == "" || !run.Manual {
		t.Fatalf("trigger a config job: %+v %v", run, err)
	}
	if _, err := s.Trigger(ctx, "nope"); !errors.Is(err, supervisor.ErrNotFound) {
		t.Fatalf("trigger an unknown job: %v", err)
	}
	if _, err := s.Create(ctx, Def{Name: "off", Schedule: "@daily", Spec: sleeper("0")}); err != nil {
		t.Fatal(err)
	}
	if j, _ := s.Get("off"); j.Enabled || j.NextRun != nil {
		t.Fatalf("a disabled job has a next run: %+v", j)
	}
	if j, err := s.SetEnabled(ctx, "off", true); err != nil || !j.Enabled || j.NextRun == nil {
		t.Fatalf("enable: %+v %v", j, err)
	}
	if err := s.Delete(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("off"); !errors.Is(err, supervisor.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
}

// Found in review: concurrent triggers under skip start one run; a queued
// firing, the runs still going and a disabled spell all survive a restart
// correctly; a job that never fired catches up from when it was created.
func TestServiceAcrossRestarts(t *testing.T) {
	w := newWorld(t)
	s, r := w.open()
	ctx := context.Background()
	mk := func(d Def) {
		t.Helper()
		if _, err := s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	mk(Def{Name: "busy", Schedule: "* * * * *", Enabled: true, Spec: sleeper("60")})
	mk(Def{Name: "q", Schedule: "@daily", Overlap: "queue", Enabled: true, Spec: sleeper("60")})
	mk(Def{Name: "paused", Schedule: "@hourly", Missed: "run-once", Enabled: true, Spec: sleeper("0")})
	mk(Def{Name: "fresh", Schedule: "@hourly", Missed: "run-once", Enabled: true, Spec: sleeper("0")})

	var wg sync.WaitGroup
	actions := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := s.Trigger(ctx, "busy")
			if err != nil {
				t.Error(err)
			}
			actions <- f.Action
		}()
	}
	wg.Wait()
	close(actions)
	runs := 0
	for a := range actions {
		if a == "run" {
			runs++
		}
	}
	if runs != 1 {
		t.Fatalf("%d of 4 concurrent triggers ran under overlap skip", runs)
	}
	for range 12 { // skips push the run out of the last ten firings
		r.Tick(ctx, w.advance(time.Minute))
	}
	if f, _ := s.Trigger(ctx, "q"); f.Action != "run" {
		t.Fatalf("q: %+v", f)
	}
	if f, _ := s.Trigger(ctx, "q"); f.Action != "queue" {
		t.Fatalf("q again: %+v", f)
	}
	if _, err := s.SetEnabled(ctx, "paused", false); err != nil {
		t.Fatal(err)
	}
	w.advance(3 * time.Hour)
	if _, err := s.SetEnabled(ctx, "paused", true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	w.advance(10 * time.Minute)

	s2, r2 := w.open()
	busy, _ := s2.Get("busy")
	var runIDs []string
	for _, f := range busy.Recent {
		if f.Action == "run" {
			runIDs = append(runIDs, f.AgentID)
		}
	}
	if len(runIDs) != 1 || busy.LastOutcome != "skipped" {
		t.Fatalf("busy: runs %v, last %q", runIDs, busy.LastOutcome)
	}
	r2.Tick(ctx, w.advance(time.Minute))
	if busy, _ = s2.Get("busy"); busy.Recent[0].Action != "skip" {
		t.Fatalf("the run from before the restart did not count for overlap: %+v", busy.Recent[0])
	}
	if p, _ := s2.Get("paused"); len(p.Recent) != 0 {
		t.Fatalf("firings missed while disabled were caught up: %+v", p.Recent)
	}
	if f, _ := s2.Get("fresh"); len(f.Recent) != 1 || f.Recent[0].Missed != 3 {
		t.Fatalf("a job that never fired did not catch up: %+v", f.Recent)
	}
	q, _ := s2.Get("q")
	if _, err := w.sup.Kill(ctx, q.Recent[1].AgentID, 0); err != nil {
		t.Fatal(err)
	}
	r2.Tick(ctx, w.clock())
	if q, _ = s2.Get("q"); q.Recent[0].Action != "run" || q.Recent[0].AgentID == "" {
		t.Fatalf("the queued firing was lost in the restart: %+v", q.Recent)
	}
}

// Firings skipped by the overlap policy were not missed: a restart soon
// after does not catch them up.
func TestSkippedFiringsAreNotMissed(t *testing.T) {
	w := newWorld(t)
	s, r := w.open()
	ctx := context.Background()
	if _, err := s.Create(ctx, Def{Name: "long", Schedule: "* * * * *", Missed: "run-once", Enabled: true, Spec: sleeper("60")}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		r.Tick(ctx, w.advance(time.Minute))
	}
	s.Close()
	w.advance(20 * time.Second) // no firing time passes while it is down
	s2, _ := w.open()
	if j, _ := s2.Get("long"); len(j.Recent) != 5 || j.Recent[0].Action != "skip" || j.Recent[0].Missed != 0 {
		t.Fatalf("%+v", j.Recent)
	}
}
