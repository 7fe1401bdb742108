package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
)

const lease = 1500 * time.Millisecond

type fixture struct {
	t  *testing.T
	ev *bus.Bus
	o  Options
}

func newFixture(t *testing.T) *fixture {
	bb := backbonetest.Start(t, "1s")
	ev, err := bus.Open(context.Background(), bb.JS, bus.Options{Node: "test", MaxAge: time.Hour, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Close)
	return &fixture{t: t, ev: ev, o: Options{JS: bb.JS, Lease: lease, Bus: ev}}
}

// join makes a member named name of home instance.
func (f *fixture) join(name, instance string) (*Members, error) {
	o := f.o
	o.Self = oxios.Node{Name: name, Address: "http://" + name + ":4200", Instance: instance, Version: "test", Labels: map[string]string{"zone": name}}
	return Join(context.Background(), o)
}

func (f *fixture) mustJoin(name, instance string) *Members {
	f.t.Helper()
	m, err := f.join(name, instance)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// crash stops m's beating without a word, as SIGKILL would.
func crash(m *Members) {
	m.cancel()
	m.wg.Wait()
}

// waitState polls until observer sees name in state, within d.
func waitState(t *testing.T, observer *Members, name string, state oxios.NodeState, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for observer.State(name) != state {
		if time.Since(start) > d {
			t.Fatalf("%s: %s is %q after %s, want %q", observer.Self(), name, observer.State(name), d, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// events counts the stored events of each type about node.
func (f *fixture) events(node string) map[string]int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := f.ev.Subscribe(ctx, bus.Filter{Types: []string{"node.*"}}, bus.SubscribeOptions{UntilCaughtUp: true})
	if err != nil {
		f.t.Fatal(err)
	}
	defer sub.Close()
	n := map[string]int{}
	for e := range sub.C {
		if strings.Contains(string(e.Data), `"node":"`+node+`"`) {
			n[e.Type]++
		}
	}
	return n
}

func TestMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for leases")
	}
	f := newFixture(t)
	n1, n2, n3 := f.mustJoin("n1", "home1"), f.mustJoin("n2", "home2"), f.mustJoin("n3", "home3")
	defer n1.Leave(context.Background())
	n1.SetLoad(func() (int, int, int) { return 2, 7, 9 })
	waitState(t, n2, "n1", oxios.NodeAlive, 2*lease)
	waitState(t, n3, "n2", oxios.NodeAlive, 2*lease)

	// The list says who is there and what each said of itself.
	deadline := time.Now().Add(2 * lease)
	for {
		var got oxios.Node
		for _, n := range n2.List() {
			if n.Name == "n1" {
				got = n
			}
		}
		if got.Running == 2 && got.FreeSlots == 7 && got.Labels["zone"] == "n1" && got.Address == "http://n1:4200" && got.State == oxios.NodeAlive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 sees n1 as %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Fencing: another home may not take a live node's name.
	_, err := f.join("n1", "elsewhere")
	var taken *TakenError
	if !errors.As(err, &taken) || !strings.Contains(err.Error(), "http://n1:4200") {
		t.Fatalf("a second n1 joined: %v", err)
	}

	// The same, asked over plain NATS before a node joins JetStream.
	nc := f.o.JS.Conn()
	if err := WhoHolds(context.Background(), nc, "n1", "elsewhere"); !errors.As(err, &taken) || taken.Address != "http://n1:4200" {
		t.Fatalf("whois n1 from another home: %v", err)
	}
	if err := WhoHolds(context.Background(), nc, "n1", "home1"); err != nil {
		t.Fatalf("whois n1 from its own home: %v", err)
	}
	if err := WhoHolds(context.Background(), nc, "nobody", "x"); err != nil {
		t.Fatalf("whois of a free name: %v", err)
	}

	// A graceful leave: left at once, and its name is free.
	n3.Leave(context.Background())
	waitState(t, n2, "n3", oxios.NodeLeft, lease)
	n3b := f.mustJoin("n3", "other-home")
	waitState(t, n2, "n3", oxios.NodeAlive, 2*lease)

	// A crash: suspect after a missed beat, dead within the lease and a
	// second, seen by both observers, each event stored once.
	crash(n2)
	waitState(t, n1, "n2", oxios.NodeSuspect, lease)
	took := waitState(t, n3b, "n2", oxios.NodeDead, lease+time.Second)
	t.Logf("n2 dead after %s (lease %s)", took, lease)
	waitState(t, n1, "n2", oxios.NodeDead, lease+time.Second)
	if ev := f.events("n2"); ev["node.joined"] != 1 || ev["node.suspect"] != 1 || ev["node.dead"] != 1 {
		t.Fatalf("events about n2: %v, want one each of joined, suspect, dead", ev)
	}
	if ev := f.events("n3"); ev["node.left"] != 1 || ev["node.joined"] != 2 {
		t.Fatalf("events about n3: %v, want joined twice and left once", ev)
	}
	// The home that crashed takes its name back at once.
	n2b := f.mustJoin("n2", "home2")
	waitState(t, n1, "n2", oxios.NodeAlive, 2*lease)
	n2b.Leave(context.Background())
	n3b.Leave(context.Background())
}

// resume starts a crashed member's goroutines again, as SIGCONT would
// for a paused daemon.
func resume(m *Members) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go m.keepBeating(ctx)
	go m.watchLease(ctx)
}

func TestPausedNodeFencesThenRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for leases")
	}
	f := newFixture(t)
	f.o.Fence = true
	n1, n2 := f.mustJoin("n1", "home1"), f.mustJoin("n2", "home2")
	defer n2.Leave(context.Background())
	defer n1.Leave(context.Background())
	var order []string
	var mu sync.Mutex
	note := func(what string) func() {
		return func() { mu.Lock(); order = append(order, what); mu.Unlock() }
	}
	n1.OnFence(note("fence"), note("rejoin"))
	waitState(t, n2, "n1", oxios.NodeAlive, 2*lease)

	// Paused past its lease: the others see it dead.
	crash(n1)
	waitState(t, n2, "n1", oxios.NodeDead, 3*lease)
	if n1.Fenced() {
		t.Fatal("fenced while paused: nothing of it ran")
	}
	// Continued: it fences first, then joins again and takes back what is
	// still its own.
	resume(n1)
	waitState(t, n2, "n1", oxios.NodeAlive, 2*lease)
	deadline := time.Now().Add(2 * lease)
	for {
		mu.Lock()
		got := strings.Join(order, ",")
		mu.Unlock()
		if got == "fence,rejoin" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls after the pause: %q, want fence,rejoin", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n1.Fenced() {
		t.Fatal("still fenced after it renewed its heartbeat")
	}
}

func TestSingleNodeNeverFences(t *testing.T) {
	f := newFixture(t)
	n1 := f.mustJoin("n1", "home1")
	defer n1.Leave(context.Background())
	fenced := false
	n1.OnFence(func() { fenced = true }, nil)
	// Its backbone stalled for ten leases: there is no one to hand its
	// agents to, so it keeps them.
	n1.checkLease(time.Now().Add(10 * lease))
	if fenced || n1.Fenced() {
		t.Fatal("a single node fenced itself")
	}
}
