package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/logfile"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/scheduler"
)

// clusterEnvs opens a supervisor on each of the first n nodes (n1, n2, …)
// of a three-node cluster in this process.
func clusterEnvs(tb testing.TB, n int) []*env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts a three-node cluster")
	}
	bbs := backbonetest.Cluster(tb, 3, []byte("k"))
	envs := make([]*env, n)
	for i := range n {
		e := &env{t: tb, bb: bbs[i], home: tb.TempDir(), lim: scheduler.Limits{MaxRunning: 256, MaxRunningLLM: 8}, node: fmt.Sprintf("n%d", i+1)}
		var err error
		e.bus, err = bus.Open(context.Background(), e.bb.JS, bus.Options{Node: e.node, MaxAge: time.Hour, MaxBytes: 64 << 20, Replicas: e.bb.Replicas})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(e.bus.Close)
		e.open()
		envs[i] = e
	}
	return envs
}

// listed polls until e lists agent id.
func (e *env) listed(id string) Record {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _ := e.sup.List(Filter{}, 0, "")
		if i := slices.IndexFunc(recs, func(r Record) bool { return r.ID == id }); i >= 0 {
			return recs[i]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s does not list agent %s", e.node, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Another node's agent is listed, read, followed, killed, waited for and
// removed from this node; errors come back as the owner's.
func TestRemoteAgents(t *testing.T) {
	envs := clusterEnvs(t, 3)
	n1, n2, n3 := envs[0], envs[1], envs[2]
	ctx := context.Background()
	a := n1.spawn(sh("echo hello; i=0; while :; do echo line $i; i=$((i+1)); sleep 0.05; done"))
	if r := n3.listed(a.ID); r.Node != "n1" {
		t.Fatalf("listed on n3 as %+v", r)
	}
	if recs, _ := n3.sup.List(Filter{Node: "n2"}, 0, ""); len(recs) != 0 {
		t.Fatalf("the node filter lets n1's agent through: %+v", recs)
	}
	n3.waitFor(a.ID, func(r Record) bool { return r.State == Running && r.PID > 0 && r.Node == "n1" })
	// n2's index follows the bucket too, at its own pace.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := n2.sup.Stats(time.Time{}, "n1")
		if st.ByState[Running] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2's stats of n1: %+v", st)
		}
	}

	// The log: its tail, then read on from the cursor, as a follower does.
	var lines []string
	var c logfile.Cursor
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(lines, "hello") {
		var err error
		if lines, c, err = n3.sup.LogTail(ctx, a.ID, 1000); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 never read n1's agent's log: %q", lines)
		}
	}
	var more strings.Builder
	for !strings.Contains(more.String(), "line 5\n") {
		data, next, ended, err := n3.sup.LogRead(ctx, a.ID, c, time.Second)
		if err != nil || ended {
			t.Fatalf("read on: %v ended=%v", err, ended)
		}
		more.Write(data)
		c = next
	}

	killed, err := n3.sup.Kill(ctx, a.ID, 0)
	if err != nil || killed.State != Killed || killed.Node != "n1" {
		t.Fatalf("kill from n3: %+v %v", killed, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if r, err := n2.sup.Wait(wctx, a.ID); err != nil || r.State != Killed {
		t.Fatalf("wait on n2: %+v %v", r, err)
	}
	// Read to the end after the end: the follower is told it ended.
	for {
		_, next, ended, err := n3.sup.LogRead(ctx, a.ID, c, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if c = next; ended {
			break
		}
	}
	if _, err := n3.sup.Kill(ctx, a.ID, 0); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "already ended") {
		t.Fatalf("killing an ended agent from n3: %v, want the owner's conflict", err)
	}
	if err := n3.sup.Delete(ctx, a.ID); err != nil {
		t.Fatalf("delete from n3: %v", err)
	}
	if _, err := n1.sup.get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("n1 still has the agent n3 deleted: %v", err)
	}
	if _, err := n3.sup.Get("01a20000-0000-7000-8000-00000000dead"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of no agent: %v", err)
	}

	// A node that does not answer: its agents are shown as stored, and
	// what would change them is refused as unreachable.
	b := n1.spawn(sh("sleep 100"))
	n3.waitFor(b.ID, func(r Record) bool { return r.State == Running })
	n1.close()
	if _, err := n3.sup.Kill(ctx, b.ID, 0); !errors.Is(err, oxios.ErrUnreachable) || !strings.Contains(err.Error(), "node n1") {
		t.Fatalf("kill on a stopped node: %v", err)
	}
	if r, err := n3.sup.Get(b.ID); err != nil || r.Node != "n1" {
		t.Fatalf("get on a stopped node: %+v %v", r, err)
	}
}

// A record another node wrote since this one last did is never written
// over: this node learns from the watch that the agent is not its own any
// more, stops its process at once and forgets it, writing nothing.
func TestRecordWritesExpectTheirRevision(t *testing.T) {
	e := newEnv(t, scheduler.Limits{})
	r := e.spawn(sh("sleep 100"))
	e.waitState(r.ID, Running)
	running, _ := e.sup.Get(r.ID)
	stolen := running
	stolen.Node, stolen.State = "thief", Running
	b, _ := json.Marshal(stolen)
	if _, err := e.sup.kv.Put(context.Background(), r.ID, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := e.sup.get(r.ID); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node still runs an agent another node took")
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitGone(t, running.PID)
	entry, err := e.sup.kv.Get(context.Background(), r.ID)
	if err != nil || !strings.Contains(string(entry.Value()), `"node":"thief"`) {
		t.Fatalf("the thief's record was written over: %s %v", entry.Value(), err)
	}
	if got, err := e.sup.Get(r.ID); err != nil || got.Node != "thief" {
		t.Fatalf("the agent is now listed as %+v %v, want the thief's", got, err)
	}
}

// BenchmarkAgentGet is a get of an agent on this node and of one on
// another node (forwarded).
func BenchmarkAgentGet(b *testing.B) {
	envs := clusterEnvs(b, 3)
	a := envs[0].spawn(sh("sleep 3600"))
	envs[2].listed(a.ID)
	for _, c := range []struct {
		name string
		e    *env
	}{{"local", envs[0]}, {"remote", envs[2]}} {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.e.sup.Get(a.ID); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Nanoseconds())/1000, "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Nanoseconds())/1000, "p99-µs")
		})
	}
	envs[0].sup.Kill(context.Background(), a.ID, 0)
}

// BenchmarkAgentKill is a kill (SIGKILL at once, the end stored) of an
// agent on this node and of one on another node (forwarded).
func BenchmarkAgentKill(b *testing.B) {
	envs := clusterEnvs(b, 3)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		e    *env
	}{{"local", envs[0]}, {"remote", envs[2]}} {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				a := envs[0].spawn(sh("sleep 3600"))
				envs[0].pollRunning(b, a.ID, 0)
				c.e.listed(a.ID)
				b.StartTimer()
				t0 := time.Now()
				if r, err := c.e.sup.Kill(ctx, a.ID, 0); err != nil || r.State != Killed {
					b.Fatalf("kill: %+v %v", r, err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportMs(b, lat)
		})
	}
}
