package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/proc"
)

// chaos is a running cluster under test, with what the test knows of it.
type chaos struct {
	t     testing.TB
	nodes []*env
	up    []atomic.Bool // which nodes answer (not killed, not paused)
	ids   []string      // the agents, each to run exactly once
	// acked are the state writes the cluster acknowledged.
	mu    sync.Mutex
	acked []int
	// slots are the cron job's firings seen so far.
	slots int
}

func newChaos(t testing.TB, nodes []*env) *chaos {
	c := &chaos{t: t, nodes: nodes, up: make([]atomic.Bool, len(nodes))}
	for i := range nodes {
		c.up[i].Store(true)
	}
	return c
}

func (c *chaos) client(i int) *client.Client {
	e := c.nodes[i]
	return client.New("http://"+e.listen, e.token())
}

// anyUp is a node that answers, other than not.
func (c *chaos) anyUp(not int) int {
	for _, i := range rand.Perm(len(c.nodes)) {
		if i != not && c.up[i].Load() {
			return i
		}
	}
	c.t.Fatal("no node is up")
	return -1
}

// copies counts each agent's live processes on this machine, which is
// every node's: the agents run exactly once when each has one.
func (c *chaos) copies() map[string]int {
	all := proc.ByEnv("OXIOS_AGENT_ID")
	n := make(map[string]int, len(c.ids))
	for _, id := range c.ids {
		n[id] = len(all[id])
	}
	return n
}

func exactlyOnce(n map[string]int) (bool, string) {
	var bad []string
	for id, k := range n {
		if k != 1 {
			bad = append(bad, fmt.Sprintf("%s×%d", id[len(id)-8:], k))
		}
	}
	slices.Sort(bad)
	return len(bad) == 0, strings.Join(bad, " ")
}

// awaitOnce waits until every agent runs exactly once, and returns how
// long that took.
func (c *chaos) awaitOnce(within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		ok, bad := exactlyOnce(c.copies())
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			c.t.Fatalf("agents not running exactly once after %s: %s", within, bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stayOnce checks, over a second, that no agent runs twice or not at all.
func (c *chaos) stayOnce() {
	c.t.Helper()
	for range 5 {
		if ok, bad := exactlyOnce(c.copies()); !ok {
			c.t.Fatalf("agents not running exactly once: %s", bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// write keeps writing state through the nodes that are up, noting every
// write the cluster acknowledged, until ctx ends.
func (c *chaos) write(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		n := c.anyUp(-1)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.client(n).StatePut(wctx, "chaos", fmt.Sprintf("k%06d", i), []byte(fmt.Sprintf(`{"n": %d}`, i)), client.PutOptions{})
		cancel()
		if err == nil {
			c.mu.Lock()
			c.acked = append(c.acked, i)
			c.mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check asserts, through node i, that no acknowledged write was lost,
// that the audit trail verifies on every node that is up, and that the
// cron job fired each of its slots once, and some since the last check.
func (c *chaos) check(round int) {
	c.t.Helper()
	ctx := context.Background()
	i := c.anyUp(-1)
	cl := c.client(i)
	c.mu.Lock()
	acked := slices.Clone(c.acked)
	c.mu.Unlock()
	// A node reads state from its copy, which follows the bucket: after a
	// stream lost its leader it may lag for seconds. Every acknowledged
	// write must be there once it has caught up.
	start := time.Now()
	for missing := -1; missing != 0; {
		have := map[string]bool{}
		for cursor := ""; ; {
			items, next, err := cl.StateList(ctx, "chaos", "", 1000, cursor)
			if err != nil {
				break
			}
			for _, e := range items {
				have[e.Key] = true
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		missing = 0
		first := ""
		for _, n := range acked {
			if k := fmt.Sprintf("k%06d", n); !have[k] {
				if missing++; first == "" {
					first = k
				}
			}
		}
		if missing > 0 && time.Since(start) > 30*time.Second {
			c.t.Fatalf("round %d: %d acknowledged writes are lost, %s first (%d acknowledged; read from n%d)", round, missing, first, len(acked), i+1)
		}
		if missing > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if d := time.Since(start); d > time.Second {
		c.t.Logf("round %d: n%d's copy of the state caught up after %s", round, i+1, d.Round(time.Millisecond))
	}
	for j := range c.nodes {
		if !c.up[j].Load() {
			continue
		}
		// A stream electing a new leader answers 503 for a moment: asked
		// again, as a person would.
		var v oxios.AuditVerdict
		err := unavailable(func() error {
			vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			var err error
			v, err = c.client(j).AuditVerify(vctx)
			return err
		})
		if err != nil || !v.OK {
			b, _ := os.ReadFile(filepath.Join(c.nodes[j].home, "logs", "oxios.log"))
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "audit") || strings.Contains(l, "level=ERROR") {
					lines = append(lines, l)
				}
			}
			c.t.Fatalf("round %d: audit verify on n%d: %+v %v\n%s", round, j+1, v, err, strings.Join(lines, "\n"))
		}
	}
	// The cron job: no slot fired twice, and firing goes on (after the
	// cluster has elected new leaders for the streams the dead node led).
	var slots map[string]int
	zero := uint64(0)
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := unavailable(func() error {
			slots = map[string]int{}
			_, err := cl.Events(ctx, client.EventsOptions{Types: []string{"cron.fired"}, Since: &zero}, func(ev oxios.Event) error {
				var d struct {
					Job  string `json:"job"`
					Slot string `json:"slot"`
				}
				json.Unmarshal(ev.Data, &d)
				if d.Job == "chaos" && d.Slot != "" {
					slots[d.Slot]++
				}
				return nil
			})
			return err
		})
		if err != nil {
			c.t.Fatalf("round %d: events: %v", round, err)
		}
		for s, n := range slots {
			if n > 1 {
				c.t.Fatalf("round %d: the cron job fired slot %s %d times", round, s, n)
			}
		}
		if len(slots) > c.slots {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("round %d: the cron job fired no slot since the last round (%d in all)", round, len(slots))
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.slots = len(slots)
}

// spawn starts n agents, a third through each node, each a process that
// runs until killed and restarts always.
func (c *chaos) spawn(n int) {
	c.t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.client(i%len(c.nodes)).Spawn(context.Background(), oxios.Spec{Name: fmt.Sprintf("chaos-%02d", i), Command: "sh",
				Args: []string{"-c", "exec sleep 3600"}, Restart: oxios.Restart{Policy: oxios.Always, MaxRestarts: 100}})
			if err != nil {
				c.t.Errorf("spawn: %v", err)
				return
			}
			mu.Lock()
			c.ids = append(c.ids, r.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
	c.t.Cleanup(func() {
		for _, id := range c.ids {
			c.nodes[c.anyUp(-1)].oxios("agent", "kill", "--grace", "0s", id)
		}
	})
}

// victim is a random node that runs agents (a node started again runs
// none until others die).
func (c *chaos) victim() int {
	running := map[string]bool{}
	all := proc.ByEnvWith("OXIOS_AGENT_ID", "OXIOS_NODE")
	for _, id := range c.ids {
		for _, p := range all[id] {
			running[p.Also] = true
		}
	}
	for _, i := range rand.Perm(len(c.nodes)) {
		if running[fmt.Sprintf("n%d", i+1)] {
			return i
		}
	}
	return rand.IntN(len(c.nodes))
}

// unavailable runs call until it is not refused with 503 (a stream
// electing a new leader after a node died answers so for a moment), as
// a person would try again, for at most 30 s.
func unavailable(call func() error) error {
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := call()
		var ce *client.Error
		if err == nil || !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill ends node v as a machine that is gone: its daemon and its agents'
// processes get SIGKILL at once.
func (c *chaos) kill(v int) {
	e := c.nodes[v]
	pid := e.pidIfRunning()
	if pid == 0 {
		c.t.Fatalf("n%d is not running", v+1)
	}
	c.up[v].Store(false)
	syscall.Kill(pid, syscall.SIGKILL)
	var killed []int
	for _, ps := range proc.ByEnvWith("OXIOS_AGENT_ID", "OXIOS_NODE") {
		for _, p := range ps {
			if p.Also == fmt.Sprintf("n%d", v+1) {
				syscall.Kill(p.PID, syscall.SIGKILL)
				killed = append(killed, p.PID)
			}
		}
	}
	for _, p := range append(killed, pid) {
		waitGone(c.t, p, 10*time.Second)
	}
}

// restart starts node v again, and waits until every node sees it alive.
func (c *chaos) restart(v int) {
	e := c.nodes[v]
	if r := e.oxios("start", "--listen", e.listen); r.code != 0 {
		b, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
		c.t.Fatalf("n%d did not start again: %s\n%s", v+1, r, b)
	}
	c.up[v].Store(true)
	name := fmt.Sprintf("n%d", v+1)
	for _, o := range c.nodes {
		o.awaitNodes(30*time.Second, name+" alive again", func(by map[string]oxios.Node) bool { return by[name].State == oxios.NodeAlive })
	}
}

// The cluster keeps its promises while nodes die: three nodes, thirty
// agents with restart always, a cron job and a stream of state writes.
// Ten rounds each kill a random node with its agents (the machine is
// gone), wait until every agent runs again, exactly once, check, and
// bring the node back; one round pauses a daemon for two leases instead,
// and checks that it fences itself when it continues.
func TestClusterChaos(t *testing.T) {
	routes := backbonetest.FreePorts(t, 3)
	nodes := clusterOf(t, 3, leaseConf(routes, chaosLease))
	startAll(t, nodes)
	c := newChaos(t, nodes)
	ctx := context.Background()
	c.spawn(30)
	t.Cleanup(func() {
		for _, id := range c.ids {
			c.nodes[c.anyUp(-1)].oxios("agent", "kill", "--grace", "0s", id)
		}
	})
	c.awaitOnce(30 * time.Second)
	on := true
	if _, err := c.client(0).CreateCron(ctx, client.CronJob{Name: "chaos", Schedule: "@every 1s", Overlap: "allow", Enabled: &on,
		Spec: oxios.Spec{Command: "true"}}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	var writing sync.WaitGroup
	writing.Add(1)
	go func() { defer writing.Done(); c.write(wctx) }()
	defer func() { stop(); writing.Wait() }()

	// Each round waits for the failover with room for the backbone's own
	// elections (a stream whose leader died elects another in 4 to 9 s).
	within := 30 * time.Second
	var took []time.Duration
	for round := range 10 {
		v := c.victim()
		if round == 4 {
			pid := nodes[v].pidIfRunning()
			c.up[v].Store(false)
			syscall.Kill(pid, syscall.SIGSTOP)
			paused := time.Now()
			time.Sleep(2 * chaosLease) // the pause is the test's act, not a wait for something
			syscall.Kill(pid, syscall.SIGCONT)
			t.Logf("round %d: n%d paused for %s", round, v+1, time.Since(paused).Round(time.Millisecond))
			// No agent may run twice at any moment; one the others had not
			// taken over yet is stopped by the fencing and started again
			// once the node has rejoined.
			for range 10 {
				if n := c.copies(); slices.ContainsFunc(slices.Collect(maps.Values(n)), func(k int) bool { return k > 1 }) {
					_, bad := exactlyOnce(n)
					t.Logf("round %d: right after n%d continued: %s", round, v+1, bad)
				}
				time.Sleep(50 * time.Millisecond)
			}
			name := fmt.Sprintf("n%d", v+1)
			nodes[c.anyUp(v)].awaitNodes(30*time.Second, name+" back", func(by map[string]oxios.Node) bool { return by[name].State == oxios.NodeAlive })
			c.up[v].Store(true)
			d := c.awaitOnce(within)
			t.Logf("round %d: every agent runs once %s after n%d was back", round, d.Round(time.Millisecond), v+1)
		} else {
			c.kill(v)
			d := c.awaitOnce(within)
			took = append(took, d)
			t.Logf("round %d: n%d killed; every agent runs once again after %s", round, v+1, d.Round(time.Millisecond))
			c.stayOnce()
			c.check(round)
			c.restart(v)
		}
		c.stayOnce()
		c.check(round)
	}
	stop()
	writing.Wait()
	slices.Sort(took)
	t.Logf("failover (lease %s) over %d kills: p50 %s, max %s; %d acknowledged writes, %d cron slots",
		chaosLease, len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(c.acked), c.slots)
}

// chaosLease is the chaos test's cluster.lease: the default. A lease
// under about twice the backbone's leader election (1.5 to 3 s) lets a
// node's death make the others fence for a moment, while the stream of
// their heartbeats elects a leader.
const chaosLease = 5 * time.Second

// leaseConf is embeddedConf with another cluster.lease.
func leaseConf(routes []string, lease time.Duration) func(i int) string {
	return func(i int) string {
		return strings.Replace(embeddedConf(routes)(i), fmt.Sprintf("lease = %q", clusterLease), fmt.Sprintf("lease = %q", lease), 1)
	}
}

// BenchmarkFailover is the time from the SIGKILL of a node, its daemon and
// its agents' processes at once, until every one of 30 agents runs again,
// exactly once (counted from the processes), on a three-node cluster, with
// cluster.lease 2s and 5s.
//
//	go test ./cmd/oxios -run '^$' -bench BenchmarkFailover -benchtime 10x
func BenchmarkFailover(b *testing.B) {
	needBinary(b)
	for _, lease := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run("lease="+lease.String(), func(b *testing.B) {
			nodes := clusterOf(b, 3, leaseConf(backbonetest.FreePorts(b, 3), lease))
			startAll(b, nodes)
			c := newChaos(b, nodes)
			c.spawn(30)
			c.awaitOnce(time.Minute)
			var took []time.Duration
			for b.Loop() {
				v := c.victim()
				c.kill(v)
				took = append(took, c.awaitOnce(time.Minute))
				c.stayOnce()
				c.restart(v)
			}
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2].Seconds(), "p50-s")
			b.ReportMetric(took[(len(took)*99)/100].Seconds(), "p99-s")
			b.ReportMetric(took[len(took)-1].Seconds(), "max-s")
		})
	}
}

// BenchmarkSpawnSpread spawns 300 process agents through one node's API
// (8 clients at once) and waits until all run: on a single node, and on a
// three-node cluster, where placement spreads them over the nodes. It
// reports agents per second until the last runs, and how many each node
// got.
//
//	go test ./cmd/oxios -run '^$' -bench BenchmarkSpawnSpread -benchtime 3x
func BenchmarkSpawnSpread(b *testing.B) {
	needBinary(b)
	const n = 300
	for _, size := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			routes := backbonetest.FreePorts(b, 3)
			conf := embeddedConf(routes)
			if size == 1 {
				conf = func(i int) string { return "node = \"n1\"\n" }
			}
			nodes := clusterOf(b, size, conf)
			startAll(b, nodes)
			c := newChaos(b, nodes)
			ctx := context.Background()
			cl := c.client(0)
			live := []string{"queued", "starting", "running", "backoff"}
			var rate []float64
			var spread string
			for b.Loop() {
				t0 := time.Now()
				var wg sync.WaitGroup
				for w := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < n; i += 8 {
							if _, err := cl.Spawn(ctx, oxios.Spec{Command: "sleep", Args: []string{"3600"}, Labels: map[string]string{"bench": "spread"}}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				by := map[string]int{}
				for {
					recs, _, err := cl.Agents(ctx, client.AgentFilter{States: []string{"running"}, Labels: []string{"bench=spread"}, Limit: 1000})
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) == n {
						for _, r := range recs {
							by[r.Node]++
						}
						break
					}
					if time.Since(t0) > 2*time.Minute {
						b.Fatalf("%d of %d running after 2 minutes", len(recs), n)
					}
					time.Sleep(20 * time.Millisecond)
				}
				rate = append(rate, n/time.Since(t0).Seconds())
				spread = fmt.Sprint(by)
				b.StopTimer()
				recs, _, _ := cl.Agents(ctx, client.AgentFilter{States: live, Labels: []string{"bench=spread"}, Limit: 1000})
				for _, r := range recs {
					cl.Kill(ctx, r.ID, 0)
				}
				b.StartTimer()
			}
			slices.Sort(rate)
			b.ReportMetric(rate[len(rate)/2], "agents/s")
			b.Logf("%d nodes: placed %s", size, spread)
		})
	}
}
