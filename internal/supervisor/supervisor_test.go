package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/leaktest"
	"github.com/oxios/oxios/internal/proc"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// env is a supervisor on a real embedded backbone.
type env struct {
	t    testing.TB
	bb   *backbone.Backbone
	bus  *bus.Bus
	sup  *Supervisor
	home string
	lim  scheduler.Limits
	node string // "test" if empty
	// members, if set, is the node's cluster membership (failover_test.go).
	members *cluster.Members
}

func newEnv(t *testing.T, lim scheduler.Limits) *env {
	t.Helper()
	if lim.MaxRunning == 0 {
		lim = scheduler.Limits{MaxRunning: 256, MaxRunningLLM: 8}
	}
	e := &env{home: t.TempDir(), lim: lim}
	return e.boot(t)
}

// boot starts the backbone, the bus and the supervisor.
func (e *env) boot(tb testing.TB) *env {
	tb.Helper()
	e.t, e.bb = tb, backbonetest.Start(tb, "1s")
	var err error
	e.bus, err = bus.Open(context.Background(), e.bb.JS, bus.Options{Node: "test", MaxAge: time.Hour, MaxBytes: 64 << 20, Replicas: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.bus.Close)
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	if e.node == "" {
		e.node = "test"
	}
	o := Options{
		JS: e.bb.JS, Replicas: e.bb.Replicas, Bus: e.bus, Scheduler: scheduler.New(e.lim), Node: e.node,
		WorkspacesDir: filepath.Join(e.home, "workspaces"), LogDir: filepath.Join(e.home, "logs", "agents"),
		URL: "http://127.0.0.1:1", Defaults: SpecDefaults{StopTimeout: 2 * time.Second},
		Retain: 1000, RetainFor: time.Hour,
	}
	if m := e.members; m != nil {
		o.Nodes, o.NodeState, o.Lease = m.List, m.State, testLease
		o.Drained = func() bool { return m.Drained(e.node) }
		o.StillLost = m.Lost
	}
	sup, err := Open(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sup = sup
	if e.members != nil {
		e.members.OnFence(sup.Fence, sup.Rejoin)
	}
	e.t.Cleanup(func() { e.close() })
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.sup.Close(ctx)
}

func sh(script string) Spec {
	return Spec{Name: "sh", Command: "/bin/sh", Args: []string{"-c", script}}
}

func (e *env) spawn(s Spec) Record {
	e.t.Helper()
	r, err := e.sup.Spawn(context.Background(), s)
	if err != nil {
		e.t.Fatalf("spawn: %v", err)
	}
	return r
}

func (e *env) wait(id string) Record {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := e.sup.Wait(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if !r.State.Terminal() {
		e.t.Fatalf("agent %s still %s after 20s", id, r.State)
	}
	return r
}

// waitState polls until agent id is in state st.
func (e *env) waitState(id string, st State) Record {
	e.t.Helper()
	return e.waitFor(id, func(r Record) bool { return r.State == st })
}

// waitFor polls until agent id's record satisfies ok.
func (e *env) waitFor(id string, ok func(Record) bool) Record {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.sup.Get(id)
		if err == nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent %s did not reach the expected state: %+v", id, r)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// events returns every event stored so far (for one agent, or all).
func (e *env) events(agent string) []bus.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := e.bus.Subscribe(ctx, bus.Filter{Agent: agent, Types: []string{"agent.*"}}, bus.SubscribeOptions{UntilCaughtUp: true})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []bus.Event
	for ev := range sub.C {
		out = append(out, ev)
	}
	return out
}

func types(evs []bus.Event) []string {
	var ts []string
	for _, ev := range evs {
		ts = append(ts, ev.Type)
	}
	return ts
}

func terminalEvents(evs []bus.Event) int {
	n := 0
	for _, ev := range evs {
		switch ev.Type {
		case "agent.succeeded", "agent.failed", "agent.killed":
			n++
		}
	}
	return n
}

func dataOf(ev bus.Event) map[string]any {
	var m map[string]any
	json.Unmarshal(ev.Data, &m)
	return m
}

// The lifecycle, case by case: how each agent ends and the events it
// publishes, with exactly one terminal event each.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	fast := RestartOpts{Policy: OnFailure, MaxRestarts: 3, Backoff: BackoffSpec{Initial: "5ms", Max: "20ms"}}
	cases := []struct {
		name    string
		spec    Spec
		kill    bool
		state   State
		reason  string
		exit    *int
		restart int
		events  []string
	}{
		{name: "succeed", spec: sh("exit 0"), state: Succeeded, reason: "exit status 0", exit: ptr(0),
			events: []string{"agent.spawned", "agent.started", "agent.exited", "agent.succeeded"}},
		{name: "fail", spec: sh("exit 3"), state: Failed, reason: "exit status 3", exit: ptr(3),
			events: []string{"agent.spawned", "agent.started", "agent.exited", "agent.failed"}},
		{name: "signal", spec: sh("kill -9 $$"), state: Failed, reason: "killed by signal SIGKILL"},
		{name: "kill", spec: sh("sleep 100"), kill: true, state: Killed, reason: "kill requested",
			events: []string{"agent.spawned", "agent.started", "agent.exited", "agent.killed"}},
		{name: "kill-on-failure", spec: withRestart(sh("sleep 100"), fast), kill: true, state: Killed, reason: "kill requested"},
		{name: "timeout", spec: withTimeout(sh("sleep 100"), "200ms"), state: Failed, reason: "timeout"},
		{name: "not-found", spec: Spec{Command: "oxios-no-such-binary"}, state: Failed, reason: "executable not found: oxios-no-such-binary",
			events: []string{"agent.spawned", "agent.failed"}},
		{name: "on-failure-succeeds", spec: withRestart(sh("exit 0"), fast), state: Succeeded, reason: "exit status 0"},
		{name: "on-failure-gives-up", spec: withRestart(sh("exit 1"), fast), state: Failed, reason: "restart limit reached", exit: ptr(1), restart: 3,
			events: []string{"agent.spawned",
				"agent.started", "agent.exited", "agent.restarting",
				"agent.started", "agent.exited", "agent.restarting",
				"agent.started", "agent.exited", "agent.restarting",
				"agent.started", "agent.exited", "agent.gave_up", "agent.failed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.spawn(c.spec)
			if r.State != Queued && r.State != Starting && r.State != Running {
				t.Fatalf("spawn returned state %s", r.State)
			}
			if c.kill {
				e.waitState(r.ID, Running)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := e.sup.Kill(ctx, r.ID, -1); err != nil {
					t.Fatal(err)
				}
			}
			r = e.wait(r.ID)
			if r.State != c.state || r.Reason != c.reason {
				t.Fatalf("ended %s (%q), want %s (%q)", r.State, r.Reason, c.state, c.reason)
			}
			if c.exit != nil && (r.ExitCode == nil || *r.ExitCode != *c.exit) {
				t.Fatalf("exit code %v, want %d", r.ExitCode, *c.exit)
			}
			if r.Restarts != c.restart || r.EndedAt == nil || r.PID != 0 {
				t.Fatalf("restarts %d (want %d), ended_at %v, pid %d", r.Restarts, c.restart, r.EndedAt, r.PID)
			}
			evs := e.events(r.ID)
			if n := terminalEvents(evs); n != 1 {
				t.Fatalf("%d terminal events: %v", n, types(evs))
			}
			if c.events != nil && strings.Join(types(evs), " ") != strings.Join(c.events, " ") {
				t.Fatalf("events\n got %v\nwant %v", types(evs), c.events)
			}
			if c.name == "on-failure-gives-up" {
				var delays []float64
				for _, ev := range evs {
					if ev.Type == "agent.restarting" {
						d := dataOf(ev)
						delays = append(delays, d["delay_ms"].(float64))
						if d["attempt"].(float64) != float64(len(delays)) {
							t.Fatalf("attempt %v, want %d", d["attempt"], len(delays))
						}
					}
				}
				// The first restart is immediate; then 5ms, 10ms, each ±20%.
				if delays[0] != 0 || delays[1] < 4 || delays[1] > 6 || delays[2] < 8 || delays[2] > 12 {
					t.Fatalf("backoff delays %v", delays)
				}
			}
		})
	}
}

// RestartOpts is Restart, for brevity in tables.
type RestartOpts = Restart

func withRestart(s Spec, r Restart) Spec { s.Restart = r; return s }
func withTimeout(s Spec, d string) Spec  { s.Timeout = d; return s }

// With restart policy always, a run longer than reset_after counts as
// stable, so every restart is immediate; short runs back off.
func TestAlwaysRestartResetsAfterStableUptime(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	stable := e.spawn(withRestart(sh("sleep 0.15"), Restart{Policy: Always, MaxRestarts: 3, ResetAfter: "100ms",
		Backoff: BackoffSpec{Initial: "400ms", Max: "1s"}}))
	unstable := e.spawn(withRestart(sh("exit 0"), Restart{Policy: Always, MaxRestarts: 3, ResetAfter: "1h",
		Backoff: BackoffSpec{Initial: "50ms", Max: "1s"}}))
	for _, c := range []struct {
		id   string
		want [][2]float64 // delay bounds per restart
	}{
		{stable.ID, [][2]float64{{0, 0}, {0, 0}, {0, 0}}},
		{unstable.ID, [][2]float64{{0, 0}, {40, 60}, {80, 120}}},
	} {
		r := e.wait(c.id)
		if r.State != Failed || r.Reason != "restart limit reached" || r.Restarts != 3 {
			t.Fatalf("%s: %s %q restarts %d", c.id, r.State, r.Reason, r.Restarts)
		}
		i := 0
		for _, ev := range e.events(c.id) {
			if ev.Type != "agent.restarting" {
				continue
			}
			d := dataOf(ev)["delay_ms"].(float64)
			if d < c.want[i][0] || d > c.want[i][1] {
				t.Fatalf("%s: restart %d waited %vms, want %v", c.id, i+1, d, c.want[i])
			}
			i++
		}
		if i != 3 {
			t.Fatalf("%d restarting events", i)
		}
	}
}

// Kill reaches a grandchild that ignores SIGTERM, via the process group.
func TestKillReachesGrandchildren(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.spawn(sh(`trap "" TERM; (trap "" TERM; sleep 100) & echo $! > gc.pid; wait`))
	e.waitState(r.ID, Running)
	pidFile := filepath.Join(r.Spec.Dir, "gc.pid")
	var gc int
	deadline := time.Now().Add(5 * time.Second)
	for gc == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidFile)
		gc, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(5 * time.Millisecond)
	}
	if gc == 0 {
		t.Fatal("no grandchild pid")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := e.sup.Kill(ctx, r.ID, 100*time.Millisecond)
	if err != nil || k.State != Killed || k.Signal != "SIGKILL" {
		t.Fatalf("kill: %v %s signal %q", err, k.State, k.Signal)
	}
	waitGone(t, gc)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The agent's environment is the spec's plus PATH, HOME, LANG and the two
// OXIOS_ variables; nothing else of the daemon's. Output lands in its log.
func TestEnvironmentAndLog(t *testing.T) {
	t.Setenv("OXIOS_TOKEN", "oxs_secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "leak")
	e := newEnv(t, scheduler.Limits{})
	s := Spec{Command: "env", Env: map[string]string{"MODE": "fast"}}
	r := e.wait(e.spawn(s).ID)
	if r.State != Succeeded || r.Name != "env" {
		t.Fatalf("%s %q name %q", r.State, r.Reason, r.Name)
	}
	b, _ := os.ReadFile(e.sup.LogPath(r.ID))
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, _, _ := strings.Cut(line, "=")
		keys = append(keys, k)
	}
	if got := strings.Join(keys, ","); got != "HOME,LANG,MODE,OXIOS_AGENT_ID,OXIOS_NODE,OXIOS_URL,PATH,TEMP,TMP,TMPDIR" {
		t.Fatalf("environment keys %s\n%s", got, b)
	}
	// Sandboxed: HOME is its own directory, its temporary directory is
	// private, and PATH keeps only what the sandbox lets it read.
	tmp := filepath.Join(filepath.Dir(r.Spec.Dir), r.ID, ".tmp")
	for _, want := range []string{"HOME=" + r.Spec.Dir + "\n", "TMPDIR=" + tmp + "\n", "TMP=" + tmp + "\n", "TEMP=" + tmp + "\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %q in\n%s", want, b)
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "PATH="); ok {
			for _, d := range filepath.SplitList(p) {
				if !SandboxPolicy(r.Spec, "").Readable(d) {
					t.Errorf("PATH holds %s, which the sandbox cannot read", d)
				}
			}
		}
	}
	if r.Sandbox == nil || r.Sandbox.Mode != "enforce" || r.Sandbox.Landlock == 0 && sandbox.Probe().Landlock > 0 {
		t.Errorf("record's sandbox: %+v", r.Sandbox)
	}
	if !strings.Contains(string(b), "OXIOS_AGENT_ID="+r.ID) || !strings.Contains(string(b), "MODE=fast") {
		t.Fatalf("log:\n%s", b)
	}
	if fi, err := os.Stat(r.Spec.Dir); err != nil || !fi.IsDir() || filepath.Base(r.Spec.Dir) != r.ID {
		t.Fatalf("workspace %s: %v", r.Spec.Dir, err)
	}
}

func TestBadSpecs(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	for _, c := range []struct {
		spec  Spec
		field string
	}{
		{Spec{}, "command"},
		{Spec{Command: "  "}, "command"},
		{Spec{Command: "x", Kind: "robot"}, "kind"},
		{Spec{Command: "x", Priority: "urgent"}, "priority"},
		{Spec{Command: "x", Restart: Restart{Policy: "sometimes"}}, "restart.policy"},
		{Spec{Command: "x", Restart: Restart{MaxRestarts: -1}}, "restart.max_restarts"},
		{Spec{Command: "x", Restart: Restart{Window: "soon"}}, "restart.window"},
		{Spec{Command: "x", Restart: Restart{Backoff: BackoffSpec{Initial: "2s", Max: "1s"}}}, "restart.backoff.max"},
		{Spec{Command: "x", Timeout: "-1s"}, "timeout"},
		{Spec{Command: "x", StopTimeout: "-5s"}, "stop_timeout"},
		{Spec{Command: "x", StopSignal: "SIGFOO"}, "stop_signal"},
		{Spec{Command: "x", Dir: "relative"}, "dir"},
		{Spec{Command: "x", Dir: "/nonexistent/dir"}, "dir"},
		{Spec{Command: "x", Env: map[string]string{"1X": "y"}}, "env.1X"},
		{Spec{Command: "x", Env: map[string]string{"OXIOS_AGENT_ID": "y"}}, "env.OXIOS_AGENT_ID"},
		{Spec{Command: "x", Name: "has space"}, "name"},
		{Spec{Command: "x", Labels: map[string]string{"": "y"}}, "labels."},
	} {
		_, err := e.sup.Spawn(context.Background(), c.spec)
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("%+v: got %v, want an error naming %s", c.spec, err, c.field)
		}
	}
	if recs, _ := e.sup.List(Filter{}, 0, ""); len(recs) != 0 {
		t.Fatalf("bad specs left %d records", len(recs))
	}
}

// A queued agent can be cancelled; agents start in priority order, first
// come first served within a priority.
func TestQueueOrderAndCancel(t *testing.T) {
	e := newEnv(t, scheduler.Limits{MaxRunning: 1, MaxRunningLLM: 1})
	blocker := e.spawn(sh("sleep 100"))
	e.waitState(blocker.ID, Running)
	var ids []string
	names := []string{"low1", "normal1", "critical1", "high1", "normal2", "critical2"}
	for _, n := range names {
		s := sh("exit 0")
		s.Name = n
		s.Priority = strings.TrimRight(n, "12")
		ids = append(ids, e.spawn(s).ID)
	}
	cancelled := e.spawn(sh("exit 0"))
	if r, _ := e.sup.Get(cancelled.ID); r.State != Queued || r.QueuePosition != 6 { // behind critical×2, high, normal×2; ahead of low
		t.Fatalf("queued agent: %s position %d", r.State, r.QueuePosition)
	}
	if r, _ := e.sup.Get(ids[2]); r.QueuePosition != 1 {
		t.Fatalf("critical1 at position %d", r.QueuePosition)
	}
	ctx := context.Background()
	k, err := e.sup.Kill(ctx, cancelled.ID, -1)
	if err != nil || k.State != Killed || k.Reason != "cancelled" || k.StartedAt != nil {
		t.Fatalf("cancel: %v %+v", err, k)
	}
	if _, err := e.sup.Kill(ctx, cancelled.ID, -1); !errors.Is(err, ErrConflict) {
		t.Fatalf("killing an ended agent: %v", err)
	}
	if _, err := e.sup.Kill(ctx, blocker.ID, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		e.wait(id)
	}
	var order []string
	for _, ev := range e.events("") {
		if ev.Type == "agent.started" && ev.AgentID != blocker.ID {
			r, _ := e.sup.Get(ev.AgentID)
			order = append(order, r.Name)
		}
	}
	if got := strings.Join(order, " "); got != "critical1 critical2 high1 normal1 normal2 low1" {
		t.Fatalf("start order %s", got)
	}
}

// Many agents spawned at once never run more than max_running at a time,
// as the event log shows.
func TestLimitHoldsUnderConcurrentSpawns(t *testing.T) {
	const limit, n = 3, 40
	e := newEnv(t, scheduler.Limits{MaxRunning: limit, MaxRunningLLM: 1})
	var wg sync.WaitGroup
	ids := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.sup.Spawn(context.Background(), sh("sleep 0.02"))
			if err != nil {
				t.Error(err)
				return
			}
			ids <- r.ID
		}()
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if r := e.wait(id); r.State != Succeeded {
			t.Fatalf("%s %s %q", id, r.State, r.Reason)
		}
	}
	running, peak, starts := 0, 0, 0
	for _, ev := range e.events("") {
		switch ev.Type {
		case "agent.started":
			running++
			starts++
			peak = max(peak, running)
		case "agent.succeeded", "agent.failed", "agent.killed":
			running--
		}
	}
	if starts != n || peak > limit || peak < 2 {
		t.Fatalf("%d starts, peak %d running (limit %d)", starts, peak, limit)
	}
}

func TestWait(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.spawn(sh("sleep 0.3"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	got, err := e.sup.Wait(ctx, r.ID)
	cancel()
	if err != nil || got.State.Terminal() {
		t.Fatalf("a wait that timed out: %v %s", err, got.State)
	}
	if got = e.wait(r.ID); got.State != Succeeded {
		t.Fatal(got.State)
	}
	// Waiting on an ended agent returns at once.
	if got = e.wait(r.ID); got.State != Succeeded {
		t.Fatal(got.State)
	}
	if _, err := e.sup.Wait(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

// A manual restart of an ended agent starts a new run with one more
// terminal event; of a running agent, it replaces the process at once.
func TestManualRestart(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.wait(e.spawn(sh("exit 0")).ID)
	if _, err := e.sup.Restart(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	r = e.wait(r.ID)
	if r.State != Succeeded || terminalEvents(e.events(r.ID)) != 2 {
		t.Fatalf("%s, events %v", r.State, types(e.events(r.ID)))
	}
	long := e.spawn(sh("sleep 100"))
	first := e.waitState(long.ID, Running).PID
	if _, err := e.sup.Restart(context.Background(), long.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, _ := e.sup.Get(long.ID)
		if cur.State == Running && cur.PID != first && cur.PID != 0 {
			if cur.Reason != "restart requested" || cur.Restarts != 0 {
				t.Fatalf("after restart: reason %q restarts %d", cur.Reason, cur.Restarts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", cur)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitGone(t, first)
}

// Recovery: records left by a daemon that died are taken over. The old
// process group is terminated (by PID and start time); an agent with a
// restart policy runs again with reason "daemon restart", one without
// ends failed with reason "interrupted"; a queued one starts.
func TestRecovery(t *testing.T) {
	e := newEnv(t, scheduler.Limits{MaxRunning: 2, MaxRunningLLM: 1})
	always := e.spawn(withRestart(sh("sleep 100"), Restart{Policy: Always}))
	never := e.spawn(sh(`sleep 100 & wait`))
	queued := e.spawn(sh("exit 0"))
	a := e.waitState(always.ID, Running)
	n := e.waitState(never.ID, Running)
	// Let the children outlive this supervisor, as after SIGKILL of the
	// daemon: stop the supervisor without touching the processes.
	e.sup.abandon()
	for _, r := range []Record{a, n} {
		if len(leftovers(r)) == 0 {
			t.Fatalf("agent %s left no process to recover", r.ID)
		}
	}
	e.open()
	got := e.wait(never.ID)
	if got.State != Failed || got.Reason != "interrupted" {
		t.Fatalf("never-restart agent: %s %q", got.State, got.Reason)
	}
	if left := leftovers(n); len(left) != 0 {
		t.Fatalf("old processes %v survived recovery", left)
	}
	r := e.waitFor(always.ID, func(r Record) bool { return r.State == Running && r.PID != a.PID })
	if r.Reason != "daemon restart" {
		t.Fatalf("always-restart agent: reason %q pid %d (old %d)", r.Reason, r.PID, a.PID)
	}
	if left := leftovers(a); len(left) != 0 {
		t.Fatalf("old processes %v survived recovery", left)
	}
	if got := e.wait(queued.ID); got.State != Succeeded {
		t.Fatalf("queued agent: %s %q", got.State, got.Reason)
	}
}

// abandon stops the supervisor as a SIGKILL would: nothing is stopped or
// written, and the processes keep running.
func (s *Supervisor) abandon() {
	s.halted.Store(true)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.o.Scheduler.Close()
	s.cancel()
	s.runs.Wait()
	<-s.swept
}

func leftovers(r Record) []proc.Tagged {
	return proc.Leftovers(r.PID, r.ProcStart, "OXIOS_AGENT_ID="+r.ID)
}

// No file descriptors leak over many spawn/exit cycles.
func TestNoFDGrowth(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 50
	}
	e := newEnv(t, scheduler.Limits{MaxRunning: 16, MaxRunningLLM: 1})
	cycle := func(k int) {
		ids := make([]string, 0, k)
		for range k {
			ids = append(ids, e.spawn(Spec{Command: "true"}).ID)
		}
		for _, id := range ids {
			if r := e.wait(id); r.State != Succeeded {
				t.Fatalf("%s %q", r.State, r.Reason)
			}
		}
	}
	cycle(20) // warm up: the backbone's and the logs' steady descriptors
	before := fdCount(t)
	cycle(n)
	// Log files close once their copier has drained the pipe.
	deadline := time.Now().Add(5 * time.Second)
	after := fdCount(t)
	for after > before+3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		after = fdCount(t)
	}
	if after > before+3 {
		t.Fatalf("%d open descriptors before %d cycles, %d after", before, n, after)
	}
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// Retention deletes the oldest ended agents past the count, with their
// logs and workspaces; running agents are kept.
func TestRetention(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	e.sup.o.Retain = 2
	running := e.spawn(sh("sleep 100"))
	var ended []Record
	for i := range 4 {
		ended = append(ended, e.wait(e.spawn(sh(fmt.Sprintf("echo %d", i))).ID))
	}
	if n := e.sup.Sweep(context.Background()); n != 2 {
		t.Fatalf("swept %d, want 2", n)
	}
	for i, r := range ended {
		_, err := e.sup.Get(r.ID)
		_, logErr := os.Stat(e.sup.LogPath(r.ID))
		_, wsErr := os.Stat(r.Spec.Dir)
		if kept := i >= 2; kept != (err == nil) || kept != (logErr == nil) || kept != (wsErr == nil) {
			t.Fatalf("agent %d: kept=%v but get=%v log=%v workspace=%v", i, kept, err, logErr, wsErr)
		}
	}
	if _, err := e.sup.Get(running.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.sup.Delete(context.Background(), running.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleting a running agent: %v", err)
	}
	if err := e.sup.Delete(context.Background(), ended[3].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sup.Get(ended[3].ID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// The records are gone from the bucket too: a new supervisor sees only the running one.
	e.sup.abandon()
	e.open()
	recs, _ := e.sup.List(Filter{}, 0, "")
	if len(recs) != 2 {
		t.Fatalf("%d records after reopening, want 2", len(recs))
	}
}

// A process started just before the daemon died, whose PID was never
// written (its record still says queued), is found by its OXIOS_AGENT_ID
// and stopped at the next boot; the agent then runs again.
func TestRecoveryFindsUnrecordedProcess(t *testing.T) {
	e := newEnv(t, scheduler.Limits{MaxRunning: 1, MaxRunningLLM: 1})
	blocker := e.spawn(sh("sleep 100"))
	e.waitState(blocker.ID, Running)
	queued := e.spawn(sh("exit 0"))
	e.sup.abandon()
	reaped := startOrphan(t, queued.ID)
	e.open()
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Fatal("the unrecorded process survived recovery")
	}
	if r := e.wait(queued.ID); r.State != Succeeded {
		t.Fatalf("%s %q", r.State, r.Reason)
	}
}

// An automatic restart forks before it writes the new PID; if the daemon
// dies in between, the record says backoff with no PID. Recovery finds the
// process by its OXIOS_AGENT_ID and stops it before running the agent again.
func TestRecoveryFindsUnrecordedRestart(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.spawn(withRestart(sh("exit 1"), Restart{Policy: Always, Backoff: BackoffSpec{Initial: "1h", Max: "1h"}}))
	e.waitFor(r.ID, func(r Record) bool { return r.State == Backoff && r.Restarts == 2 })
	e.sup.abandon()
	reaped := startOrphan(t, r.ID)
	e.open()
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		got, _ := e.sup.Get(r.ID)
		t.Fatalf("the unrecorded process of a backing-off agent survived recovery; agent is %s pid %d", got.State, got.PID)
	}
}

// A restart that waited for the lock while the agent was deleted does not
// bring it back.
func TestRestartRacingDelete(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.wait(e.spawn(sh("true")).ID)
	a, _ := e.sup.get(r.ID)
	a.mu.Lock()
	done := make(chan error)
	go func() { _, err := e.sup.Restart(context.Background(), r.ID); done <- err }()
	waitBlocked(t, "supervisor.(*Supervisor).Restart") // it has found the agent and waits for its lock
	if err := e.sup.remove(context.Background(), a, "deleted"); err != nil {
		t.Fatal(err)
	}
	a.mu.Unlock()
	if err := <-done; !errors.Is(err, ErrNotFound) {
		t.Fatalf("restart of a deleted agent: %v", err)
	}
	if _, err := e.sup.kv.Get(context.Background(), r.ID); err == nil {
		t.Fatal("the deleted agent's record is back in the bucket")
	}
}

// A kill that arrives while recovery is still stopping the old processes
// ends the agent killed, not failed.
func TestKillDuringRecovery(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	s := sh(`trap "" TERM; echo ready; sleep 100`)
	s.StopTimeout = "3s"
	r := e.spawn(s)
	e.waitState(r.ID, Running)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readFile(e.sup.LogPath(r.ID)), "ready") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the trap is set
	}
	e.sup.abandon()
	e.open()
	got, err := e.sup.Kill(context.Background(), r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Killed || got.Reason != "kill requested" {
		t.Fatalf("killed during recovery: %s %q", got.State, got.Reason)
	}
	if n := terminalEvents(e.events(r.ID)); n != 1 {
		t.Fatalf("%d terminal events", n)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// In a bucket shared by several nodes, a daemon takes over only its own
// node's agents.
func TestRecoveryKeepsToItsNode(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	other := Record{ID: "01a20000-0000-7000-8000-000000000001", Kind: KindProcess, Name: "x", State: Running,
		Node: "other", PID: 1, ProcStart: 1, CreatedAt: time.Now(), Spec: sh("sleep 100")}
	b, _ := json.Marshal(other)
	if _, err := e.sup.kv.Put(context.Background(), other.ID, b); err != nil {
		t.Fatal(err)
	}
	e.sup.abandon()
	e.open()
	if _, err := e.sup.get(other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another node's agent was taken over: %v", err)
	}
	// It is listed, as its node stored it (that node does not answer).
	if r, err := e.sup.Get(other.ID); err != nil || r.Node != "other" || r.State != Running {
		t.Fatalf("another node's agent is not shown as stored: %+v %v", r, err)
	}
	if entry, err := e.sup.kv.Get(context.Background(), other.ID); err != nil || !strings.Contains(string(entry.Value()), `"state":"running"`) {
		t.Fatalf("another node's record was changed: %v", err)
	}
}

// startOrphan starts a process tagged as agent id's but unknown to any
// supervisor, as one forked just before the daemon died; the channel is
// closed when it has exited.
func startOrphan(t *testing.T, id string) <-chan struct{} {
	t.Helper()
	orphan := exec.Command("sleep", "100")
	orphan.Env = []string{"OXIOS_AGENT_ID=" + id}
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { orphan.Wait(); close(reaped) }()
	t.Cleanup(func() { orphan.Process.Kill(); <-reaped })
	return reaped
}

// A home that every sandbox may read would give its secrets to every
// agent: the supervisor does not open on it.
func TestHomeOutsideSandboxes(t *testing.T) {
	d := SpecDefaults{Sandbox: sandbox.Spec{Mode: sandbox.Enforce, Read: []string{"/srv/data"}}, ExecSandbox: sandbox.Spec{Mode: sandbox.Enforce}}
	for home, ok := range map[string]bool{"/opt/oxios": false, "/srv/data/oxios": false, "/usr/local/oxios": false, "/var/lib/oxios": true, t.TempDir(): true} {
		err := homeOutsideSandboxes(Options{Home: home, Defaults: d})
		if (err == nil) != ok {
			t.Errorf("home %s: %v", home, err)
		}
	}
	d.Sandbox.Mode, d.ExecSandbox.Mode = sandbox.Off, sandbox.Off
	if err := homeOutsideSandboxes(Options{Home: "/opt/oxios", Defaults: d}); err != nil {
		t.Errorf("with every sandbox off: %v", err)
	}
}

// An end that cannot be stored is not reported (issue 15.3: wait and the
// API said succeeded while the record write had failed, and after a
// restart the agent was failed). Readers keep the last stored record while
// the write is tried again; once the backbone takes it, the end is
// reported, once.
func TestEndIsReportedOnlyOnceStored(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	dir := t.TempDir()
	spec := sh("while [ ! -e go ]; do sleep 0.01; done")
	spec.Dir = dir
	r := e.spawn(spec)
	r = e.waitState(r.ID, Running)

	ctx := context.Background()
	stream, err := e.bb.JS.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	setMax := func(n int32) {
		t.Helper()
		cfg.MaxMsgSize = n
		if _, err := e.bb.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	setMax(64) // no record fits
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	waitGone(t, r.PID)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, _ := e.sup.Get(r.ID); got.State.Terminal() {
			t.Fatalf("the agent is reported %s, which was never stored", got.State)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	got, err := e.sup.Wait(wctx, r.ID)
	cancel()
	if err != nil || got.State.Terminal() {
		t.Fatalf("wait returned %s (%v) for an end that was not stored", got.State, err)
	}
	if n := countType(e.events(r.ID), "agent.succeeded"); n != 0 {
		t.Fatalf("%d agent.succeeded events for an end not stored", n)
	}

	setMax(-1)
	if got := e.wait(r.ID); got.State != Succeeded {
		t.Fatalf("after the backbone took it: %s %q", got.State, got.Reason)
	}
	kv, _ := e.bb.JS.KeyValue(ctx, Bucket)
	ent, err := kv.Get(ctx, r.ID)
	var stored Record
	if err != nil || json.Unmarshal(ent.Value(), &stored) != nil || stored.State != Succeeded {
		t.Fatalf("stored record: %v %s", err, stored.State)
	}
	if n := countType(e.events(r.ID), "agent.succeeded"); n != 1 {
		t.Fatalf("%d agent.succeeded events", n)
	}
}

func countType(evs []bus.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// A spec whose record would not fit in one backbone message is a 400-style
// error naming the spec, and nothing is kept (issue 15.3: records the
// store cannot hold).
func TestSpecTooLargeForARecord(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	e.sup.maxRecord = 16 << 10 // as on a backbone with small messages
	spec := sh("true")
	spec.Env = map[string]string{"BIG": strings.Repeat("x", 32<<10)}
	_, err := e.sup.Spawn(context.Background(), spec)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "spec" {
		t.Fatalf("spawn: %v", err)
	}
	if recs, _ := e.sup.List(Filter{}, 0, ""); len(recs) != 0 {
		t.Fatalf("%d records kept", len(recs))
	}
}

// Close waits for the OnEnd hooks of the runs that ended (issue 16.4: a
// late hook ran against the approvals manager closed after the
// supervisor).
func TestCloseWaitsForEndHooks(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	e.close()
	var hooked atomic.Bool
	ended := make(chan struct{})
	if e.node == "" {
		e.node = "test"
	}
	sup, err := Open(context.Background(), Options{
		JS: e.bb.JS, Replicas: e.bb.Replicas, Bus: e.bus, Scheduler: scheduler.New(e.lim), Node: e.node,
		WorkspacesDir: filepath.Join(e.home, "workspaces"), LogDir: filepath.Join(e.home, "logs", "agents"),
		Defaults: SpecDefaults{StopTimeout: 2 * time.Second}, Retain: 1000, RetainFor: time.Hour,
		OnEnd: func(Record) {
			close(ended)
			time.Sleep(300 * time.Millisecond) // slow work, such as abandoning approvals
			hooked.Store(true)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Spawn(context.Background(), sh("true")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the hook was not called")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sup.Close(ctx)
	if !hooked.Load() {
		t.Fatal("Close returned while an end hook was still running")
	}
}

// waitBlocked polls until a goroutine in fn waits for a mutex.
func waitBlocked(t *testing.T, fn string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		for _, g := range strings.Split(b.String(), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "sync.(*Mutex).Lock") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine in %s waits for a lock", fn)
		}
	}
}

// Spawn and Restart heed their context (issue 16.5): a caller that has
// gone gets its context's error and nothing is written.
func TestSpawnAndRestartHeedTheirContext(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.sup.Spawn(gone, sh("true")); !errors.Is(err, context.Canceled) {
		t.Fatalf("spawn with a cancelled context: %v", err)
	}
	if recs, _ := e.sup.List(Filter{}, 0, ""); len(recs) != 0 {
		t.Fatalf("%d agents after a cancelled spawn", len(recs))
	}
	r := e.wait(e.spawn(sh("true")).ID)
	if _, err := e.sup.Restart(gone, r.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("restart with a cancelled context: %v", err)
	}
	if got, _ := e.sup.Get(r.ID); got.State != Succeeded {
		t.Fatalf("after a cancelled restart: %s", got.State)
	}
	// Nothing of the cancelled restart stays behind: the agent restarts,
	// ends, and is deleted as any other.
	if _, err := e.sup.Restart(context.Background(), r.ID); err != nil {
		t.Fatalf("restart after a cancelled one: %v", err)
	}
	if got := e.wait(r.ID); got.State != Succeeded {
		t.Fatalf("the restarted run: %s %q", got.State, got.Reason)
	}
	if err := e.sup.Delete(context.Background(), r.ID); err != nil {
		t.Fatalf("delete after a cancelled restart: %v", err)
	}
}
