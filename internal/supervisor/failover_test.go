package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/proc"
	"github.com/oxios/oxios/internal/scheduler"
)

// testLease is the lease of the clusters of these tests.
const testLease = 1500 * time.Millisecond

// memberEnvs is a three-node cluster in this process: each node with its
// membership (labels zone=a, b, c; n3 also gpu=yes) and its supervisor,
// which places, fails over and fences.
func memberEnvs(t *testing.T, lim scheduler.Limits) []*env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a three-node cluster and waits for leases")
	}
	bbs := backbonetest.Cluster(t, 3, []byte("k"))
	envs := make([]*env, 3)
	for i := range 3 {
		e := &env{t: t, bb: bbs[i], home: t.TempDir(), lim: lim, node: fmt.Sprintf("n%d", i+1)}
		var err error
		e.bus, err = bus.Open(context.Background(), e.bb.JS, bus.Options{Node: e.node, MaxAge: time.Hour, MaxBytes: 64 << 20, Replicas: e.bb.Replicas})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.bus.Close)
		labels := map[string]string{"zone": string(rune('a' + i))}
		if i == 2 {
			labels["gpu"] = "yes"
		}
		e.members, err = cluster.Join(context.Background(), cluster.Options{JS: e.bb.JS, Replicas: e.bb.Replicas, Lease: testLease, Fence: true,
			Bus: e.bus, Self: oxios.Node{Name: e.node, Address: "http://" + e.node, Instance: e.node, Labels: labels}})
		if err != nil {
			t.Fatal(err)
		}
		m := e.members
		m.SetLoad(func() (int, int, int) { return 0, lim.MaxRunning, lim.MaxRunning })
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			m.Leave(ctx)
		})
		e.open()
		envs[i] = e
	}
	// Every node knows every other before the tests place anything.
	for _, e := range envs {
		deadline := time.Now().Add(10 * time.Second)
		for alive(e.members) < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %+v", e.node, e.members.List())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return envs
}

func alive(m *cluster.Members) int {
	n := 0
	for _, x := range m.List() {
		if x.State == oxios.NodeAlive && x.MaxRunning > 0 {
			n++
		}
	}
	return n
}

// crash ends node e as if its machine were gone: the supervisor stops
// without a word, its agents' processes are killed, and its backbone
// server goes away, so that it beats no more.
func (e *env) crash() {
	e.sup.abandon()
	for _, ps := range proc.ByEnvWith("OXIOS_AGENT_ID", "OXIOS_NODE") {
		for _, p := range ps {
			if p.Also == e.node {
				syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	}
	e.bb.Close()
}

// copies counts the live processes of agent id on this machine.
func copies(id string) int {
	return len(proc.ByEnv("OXIOS_AGENT_ID")[id])
}

// here spawns s on e itself, whatever placement would choose, without
// pinning it there.
func here(t *testing.T, e *env, s Spec) Record {
	t.Helper()
	r, err := e.sup.spawnHere(context.Background(), s, "test")
	if err != nil {
		t.Fatalf("spawn on %s: %v", e.node, err)
	}
	return r
}

func placed(t *testing.T, e *env, s Spec) Record {
	t.Helper()
	r, err := e.sup.Spawn(context.Background(), s)
	if err != nil {
		t.Fatalf("spawn on %s: %v", e.node, err)
	}
	return r
}

func TestPlacement(t *testing.T) {
	envs := memberEnvs(t, scheduler.Limits{MaxRunning: 8, MaxRunningLLM: 1})
	n1 := envs[0]
	// No placement: the node with the most free room, so six spawns on n1
	// go two to each node.
	count := map[string]int{}
	for range 6 {
		r := placed(t, n1, sh("sleep 100"))
		count[r.Node]++
		if !strings.HasPrefix(r.Placed, "most free room") {
			t.Fatalf("placed %q", r.Placed)
		}
	}
	if count["n1"] != 2 || count["n2"] != 2 || count["n3"] != 2 {
		t.Fatalf("six spawns went %v, want two to each node", count)
	}
	// A spawn never waits on a full node while another has room: fill n1
	// and n2, and the next goes to n3.
	for range 6 {
		placed(t, n1, withPlacement(sh("sleep 100"), &Placement{Node: "n1"}))
		placed(t, n1, withPlacement(sh("sleep 100"), &Placement{Node: "n2"}))
	}
	if r := placed(t, envs[1], sh("sleep 100")); r.Node != "n3" {
		t.Fatalf("with n1 and n2 full, placed on %s (%s)", r.Node, r.Placed)
	}

	r := placed(t, n1, withPlacement(sh("sleep 100"), &Placement{Node: "n2"}))
	if r.Node != "n2" || r.Placed != "placement.node = n2" {
		t.Fatalf("placement.node: %s %q", r.Node, r.Placed)
	}
	r = placed(t, n1, withPlacement(sh("sleep 100"), &Placement{Labels: map[string]string{"gpu": "yes"}}))
	if r.Node != "n3" || !strings.Contains(r.Placed, "labels gpu=yes") {
		t.Fatalf("placement.labels: %s %q", r.Node, r.Placed)
	}
	// Spread: three agents named web go one to each zone.
	zones := map[string]bool{}
	for range 3 {
		s := sh("sleep 100")
		s.Name = "web"
		r := placed(t, envs[2], withPlacement(s, &Placement{Spread: "zone"}))
		zones[r.Node] = true
		if !strings.HasPrefix(r.Placed, "spread over zone") {
			t.Fatalf("placed %q", r.Placed)
		}
	}
	if len(zones) != 3 {
		t.Fatalf("spread went to %v", zones)
	}

	// Impossible placements are refused, naming the field; nothing is stored.
	before, _ := n1.sup.List(Filter{}, 0, "")
	for _, c := range []struct {
		p     *Placement
		field string
		msg   string
	}{
		{&Placement{Node: "n9"}, "placement.node", "there is no node n9"},
		{&Placement{Labels: map[string]string{"gpu": "no"}}, "placement.labels", "no node with labels gpu=no"},
		{&Placement{Node: "n1", Labels: map[string]string{"gpu": "yes"}}, "placement.node", "no node n1"},
		{&Placement{Node: "bad name!"}, "placement.node", "must be a node name"},
		{&Placement{Spread: "bad key!"}, "placement.spread", "node label key"},
	} {
		_, err := n1.sup.Spawn(context.Background(), withPlacement(sh("true"), c.p))
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("placement %+v: %v, want %s: %s", c.p, err, c.field, c.msg)
		}
	}
	if after, _ := n1.sup.List(Filter{}, 0, ""); len(after) != len(before) {
		t.Fatalf("refused spawns stored %d records", len(after)-len(before))
	}
}

func withPlacement(s Spec, p *Placement) Spec { s.Placement = p; return s }

// A node is lost: its agents run again elsewhere, each exactly once,
// within a lease and two seconds; one whose restart policy is never ends
// failed with reason "node n1 lost".
func TestFailover(t *testing.T) {
	envs := memberEnvs(t, scheduler.Limits{MaxRunning: 64, MaxRunningLLM: 1})
	n1, n2, n3 := envs[0], envs[1], envs[2]
	var always []Record
	for range 6 {
		always = append(always, here(t, n1, withRestart(sh("exec sleep 100"), Restart{Policy: Always})))
	}
	never := here(t, n1, sh("exec sleep 100"))
	pinned := placed(t, n3, withPlacement(withRestart(sh("exec sleep 100"), Restart{Policy: Always}), &Placement{Node: "n1"}))
	for _, r := range append(always, never, pinned) {
		n1.waitState(r.ID, Running)
	}
	n1.crash()
	died := time.Now()
	by := map[string]int{}
	for _, r := range always {
		got := n2.waitFor(r.ID, func(r Record) bool { return r.State == Running && r.Node != "n1" && r.PID > 0 })
		by[got.Node]++
		if got.Reason != "node n1 lost" || got.Restarts != 1 || !strings.HasPrefix(got.Placed, "failover: node n1 lost") {
			t.Fatalf("taken over as %s %q restarts=%d placed %q", got.State, got.Reason, got.Restarts, got.Placed)
		}
	}
	took := time.Since(died)
	if took > testLease+2*time.Second {
		t.Errorf("failover took %s, over the lease and 2s", took)
	}
	t.Logf("failover of 6 agents: %s (lease %s)", took, testLease)
	got := n3.waitFor(never.ID, func(r Record) bool { return r.State.Terminal() })
	if got.State != Failed || got.Reason != "node n1 lost" {
		t.Fatalf("never-restart agent: %s %q", got.State, got.Reason)
	}
	// One pinned to the lost node waits for it.
	if r, _ := n2.sup.Get(pinned.ID); r.Node != "n1" {
		t.Fatalf("an agent pinned to n1 was moved: %+v", r)
	}
	// Exactly one copy of each, counted from the processes.
	for _, r := range always {
		if n := copies(r.ID); n != 1 {
			t.Errorf("agent %s runs %d times", r.ID, n)
		}
	}
	if by["n2"] == 0 || by["n3"] == 0 {
		t.Errorf("the lost node's agents all went to one node: %v", by)
	}
	for _, r := range always {
		n2.sup.Kill(context.Background(), r.ID, 0)
	}
}

// A fenced node stops its runs at once and starts none; once it renews
// its lease, those still its own go on, and one another node took
// meanwhile is forgotten.
func TestFenceAndRejoin(t *testing.T) {
	envs := memberEnvs(t, scheduler.Limits{MaxRunning: 64, MaxRunningLLM: 1})
	n1, n2 := envs[0], envs[1]
	kept := here(t, n1, withRestart(sh("exec sleep 100"), Restart{Policy: Always}))
	taken := here(t, n1, withRestart(sh("exec sleep 100"), Restart{Policy: Always}))
	k := n1.waitState(kept.ID, Running)
	tk := n1.waitState(taken.ID, Running)
	n1.sup.Fence()
	waitGone(t, k.PID)
	waitGone(t, tk.PID)
	if _, err := n1.sup.spawnHere(context.Background(), sh("true"), ""); !errors.Is(err, oxios.ErrUnreachable) {
		t.Fatalf("a fenced node spawned: %v", err)
	}
	// Meanwhile n2 takes one of them over.
	stored, rev := storedRecord(t, n2, taken.ID)
	if _, err := n2.sup.takeover(stored, rev, "node n1 lost", "failover: test", true); err != nil {
		t.Fatal(err)
	}
	n1.sup.Rejoin()
	r := n1.waitFor(kept.ID, func(r Record) bool { return r.State == Running && r.PID != k.PID && r.PID > 0 })
	if r.Reason != "lease renewed" || r.Node != "n1" {
		t.Fatalf("after rejoining: %+v", r)
	}
	if _, err := n1.sup.get(taken.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("n1 kept an agent n2 took over while it was fenced")
	}
	n2.waitFor(taken.ID, func(r Record) bool { return r.State == Running && r.Node == "n2" })
	if copies(kept.ID) != 1 || copies(taken.ID) != 1 {
		t.Fatalf("copies after rejoining: %d and %d", copies(kept.ID), copies(taken.ID))
	}
	n1.sup.Kill(context.Background(), kept.ID, 0)
	n2.sup.Kill(context.Background(), taken.ID, 0)
}

// storedRecord reads agent id's record and revision from e's index.
func storedRecord(t *testing.T, e *env, id string) (Record, uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.sup.remote.mu.Lock()
		r, rev := e.sup.remote.recs[id], e.sup.remote.revs[id]
		e.sup.remote.mu.Unlock()
		if r != nil && rev > 0 && r.State == Running {
			return *r, rev
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no record of %s", e.node, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Draining a node moves its agents (each started elsewhere, then stopped
// there) and keeps new ones off it; undraining lets them back. The last
// node that takes agents cannot be drained.
func TestDrain(t *testing.T) {
	envs := memberEnvs(t, scheduler.Limits{MaxRunning: 64, MaxRunningLLM: 1})
	n1, n2, n3 := envs[0], envs[1], envs[2]
	ctx := context.Background()
	var on2 []Record
	for range 4 {
		on2 = append(on2, here(t, n2, withRestart(sh("exec sleep 100"), Restart{Policy: Always})))
	}
	for _, r := range on2 {
		n2.waitState(r.ID, Running)
	}
	if _, err := n1.members.SetDrained(ctx, "n2", true); err != nil {
		t.Fatal(err)
	}
	for _, r := range on2 {
		got := n1.waitFor(r.ID, func(r Record) bool { return r.Node != "n2" && r.State == Running })
		if !strings.HasPrefix(got.Placed, "moved from n2 (drained)") {
			t.Fatalf("moved as %q", got.Placed)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if recs, _ := n2.sup.List(Filter{Node: "n2", States: []State{Queued, Starting, Running, Backoff}}, 0, ""); len(recs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n2 still runs agents after draining")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range on2 {
		deadline := time.Now().Add(5 * time.Second)
		for copies(r.ID) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("agent %s runs %d times after the move", r.ID, copies(r.ID))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range 4 {
		if r := placed(t, n2, sh("exec sleep 100")); r.Node == "n2" {
			t.Fatal("placed on a drained node")
		}
	}
	if _, err := n1.sup.Spawn(ctx, withPlacement(sh("true"), &Placement{Node: "n2"})); err == nil || !strings.Contains(err.Error(), "drained") {
		t.Fatalf("pinned to a drained node: %v", err)
	}
	if _, err := n1.members.SetDrained(ctx, "n3", true); err != nil {
		t.Fatal(err)
	}
	for !n3.members.Drained("n3") || !n3.members.Drained("n2") {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := n3.members.SetDrained(ctx, "n1", true); !errors.Is(err, oxios.ErrConflict) || !strings.Contains(err.Error(), "last live node") {
		t.Fatalf("draining the last node: %v", err)
	}
	for _, n := range []string{"n2", "n3"} {
		if _, err := n1.members.SetDrained(ctx, n, false); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for n3.members.Drained("n2") {
		if time.Now().After(deadline) {
			t.Fatal("n3 still sees n2 drained")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := placed(t, n1, withPlacement(sh("true"), &Placement{Node: "n2"})); r.Node != "n2" {
		t.Fatalf("undrained node not placed on: %+v", r)
	}
	recs, _ := n1.sup.List(Filter{States: []State{Queued, Starting, Running, Backoff}}, 0, "")
	for _, r := range recs {
		n1.sup.Kill(ctx, r.ID, 0)
	}
}
