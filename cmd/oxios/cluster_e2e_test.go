package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/oxios"
)

// clusterLease is the tests' cluster.lease: short, so that a death is
// seen soon.
const clusterLease = 2 * time.Second

var clusterTests sync.Mutex

// deadSlack is how long after the lease a killed node may be seen dead
// (the bound is a second; the race detector slows every daemon
// several times over).
var deadSlack = map[bool]time.Duration{false: time.Second, true: 3 * time.Second}[raceBuild]

// slowStart gives a node's start longer than the default 15 s: a cluster
// is ready once most of its nodes are up and have elected their leaders,
// which takes longer with several clusters on two cores under the race
// detector.
const slowStart = "[daemon]\nready_timeout = \"60s\"\n"

// clusterOf makes n homes of one cluster: nodes n1..nN, each with the
// cluster key that 'oxios cluster init' wrote on n1, and the config that
// conf gives node i (1-based).
func clusterOf(t testing.TB, n int, conf func(i int) string) []*env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	if tt, ok := t.(*testing.T); ok {
		tt.Parallel()
	}
	// One cluster at a time: three daemons that elect leaders and judge
	// each other's beats by the clock are not to share two cores with six
	// more.
	clusterTests.Lock()
	t.Cleanup(clusterTests.Unlock) // last: after the nodes have stopped
	nodes := make([]*env, n)
	for i := range nodes {
		nodes[i] = anotherEnv(t)
	}
	if r := nodes[0].oxios("cluster", "init"); r.code != 0 || !strings.Contains(r.stdout, "cluster.key") {
		t.Fatalf("cluster init: %s", r)
	}
	key, err := os.ReadFile(filepath.Join(nodes[0].home, "secrets", "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range nodes {
		os.MkdirAll(filepath.Join(e.home, "secrets"), 0o700)
		if i > 0 {
			if err := os.WriteFile(filepath.Join(e.home, "secrets", "cluster.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(e.home, "config.toml"), []byte(conf(i+1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// startAll starts every node at once, as a cluster answers only once most
// of its nodes are up, and stops them when the test ends.
func startAll(t testing.TB, nodes []*env) {
	t.Helper()
	var wg sync.WaitGroup
	results := make([]result, len(nodes))
	for i, e := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.oxios("start", "--listen", e.listen)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("n%d did not start: %s", i+1, r)
		}
		nodes[i].stopAtEnd()
	}
}

// embeddedConf is node i's config in an embedded cluster over routes.
func embeddedConf(routes []string) func(i int) string {
	return func(i int) string {
		var peers []string
		for j, r := range routes {
			if j != i-1 {
				peers = append(peers, fmt.Sprintf("%q", r))
			}
		}
		return fmt.Sprintf("node = \"n%d\"\nnode_labels = {zone = \"z%d\"}\n%s[cluster]\nlisten = %q\npeers = [%s]\nlease = %q\n",
			i, i, slowStart, routes[i-1], strings.Join(peers, ", "), clusterLease)
	}
}

// Three daemons form one cluster with nothing else installed, and answer
// for it from any node.
func TestEmbeddedCluster(t *testing.T) {
	routes := backbonetest.FreePorts(t, 3)
	nodes := clusterOf(t, 3, embeddedConf(routes))
	startAll(t, nodes)
	// A fourth node joins by the three nodes' routes.
	four := append(slices.Clone(routes), backbonetest.FreePorts(t, 1)...)
	exerciseCluster(t, nodes, func() string { return embeddedConf(four)(4) })
}

// The same cluster, with the daemons on one external 3-server NATS
// cluster (backbone.url) instead of their embedded servers.
func TestExternalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	urls := natsCluster(t, 3)
	conf := func(i int) string {
		return fmt.Sprintf("node = \"n%d\"\nnode_labels = {zone = \"z%d\"}\n%s[backbone]\nurl = %q\nreplicas = 3\n[cluster]\nlease = %q\n",
			i, i, slowStart, strings.Join(urls, ","), clusterLease)
	}
	nodes := clusterOf(t, 3, conf)
	startAll(t, nodes)
	exerciseCluster(t, nodes, func() string { return conf(4) })
}

// natsCluster starts n nats-servers with JetStream, routed to one another,
// and returns their client URLs once the cluster's JetStream answers.
func natsCluster(t *testing.T, n int) []string {
	t.Helper()
	routes := backbonetest.FreePorts(t, n)
	var urls []string
	for i := range n {
		o := &server.Options{ServerName: fmt.Sprintf("ext%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: 2 << 20,
			Cluster: server.ClusterOpts{Name: "ext", Host: "127.0.0.1", Port: portOf(t, routes[i])}}
		for j, r := range routes {
			if j != i {
				o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: r})
			}
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return urls
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster's JetStream never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	var p int
	if _, err := fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeList is node list -o json on e.
func (e *env) nodeList() oxios.NodeList {
	e.t.Helper()
	r := e.oxios("node", "list", "-o", "json")
	if r.code != 0 {
		e.t.Fatalf("node list: %s", r)
	}
	var l oxios.NodeList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		e.t.Fatalf("node list: %v\n%s", err, r)
	}
	return l
}

// nodes is GET /api/v1/nodes on e: quicker than the CLI, for timing.
func (e *env) nodes() oxios.NodeList {
	e.t.Helper()
	code, body := e.get("/api/v1/nodes", e.token())
	var l oxios.NodeList
	if err := json.Unmarshal([]byte(body), &l); code != 200 || err != nil {
		e.t.Fatalf("GET /api/v1/nodes: %d %v\n%s", code, err, body)
	}
	return l
}

// awaitNodes polls e's node list until want says yes, within d.
func (e *env) awaitNodes(d time.Duration, what string, want func(map[string]oxios.Node) bool, logsOf ...*env) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := e.nodes()
		by := map[string]oxios.Node{}
		for _, n := range l.Items {
			by[n.Name] = n
		}
		if want(by) {
			return
		}
		if time.Now().After(deadline) {
			var logs string
			for _, o := range logsOf {
				b, _ := os.ReadFile(filepath.Join(o.home, "logs", "oxios.log"))
				logs += "\n" + o.home + ":\n" + string(b)
			}
			e.t.Fatalf("%s: not within %s; nodes: %+v%s", what, d, l.Items, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exerciseCluster checks a running cluster of three: what each node shows
// and does for the others, one audit chain, shared tokens, fenced names,
// and nodes that leave or die. fourth is the config of a fourth node,
// which tries to join with n1's name.
func exerciseCluster(t *testing.T, nodes []*env, fourth func() string) {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if l := n2.nodeList(); len(l.Items) == 0 || l.Self != "n2" {
		t.Fatalf("node list on n2: %+v", l)
	}
	n2.awaitNodes(5*time.Second, "three nodes alive", func(by map[string]oxios.Node) bool {
		return len(by) == 3 && by["n1"].State == oxios.NodeAlive && by["n3"].State == oxios.NodeAlive &&
			by["n1"].Labels["zone"] == "z1" && by["n1"].Address == "http://"+n1.listen
	})

	clusterAgents(t, n1, n2, n3)
	clusterCron(t, n1, n2, n3)
	clusterAudit(t, nodes)
	clusterTokens(t, nodes)
	clusterPlacement(t, n1, n2, n3)
	noClusterSecrets(t, nodes)

	// A second daemon with n1's name is refused while n1 lives.
	dup := anotherEnv(t)
	key, _ := os.ReadFile(filepath.Join(n1.home, "secrets", "cluster.key"))
	os.MkdirAll(filepath.Join(dup.home, "secrets"), 0o700)
	os.WriteFile(filepath.Join(dup.home, "secrets", "cluster.key"), key, 0o600)
	os.WriteFile(filepath.Join(dup.home, "config.toml"), []byte(strings.Replace(fourth(), `node = "n4"`, `node = "n1"`, 1)), 0o600)
	r := dup.oxios("start", "--listen", dup.listen)
	if r.code == 0 {
		dup.oxios("stop")
		t.Fatalf("a second n1 started while n1 lives: %s", r)
	}
	t.Logf("the second n1: %s", r.stderr)
	if out := r.stdout + r.stderr; !strings.Contains(out, `node name "n1" is held by a live node at http://`+n1.listen) {
		t.Fatalf("the refusal does not name the node and its address: %s", r)
	}
	assertNoDaemon(t, dup)

	// n3 stops gracefully: left. n2 is killed: dead within the lease and a
	// second.
	if r := n3.oxios("stop"); r.code != 0 {
		t.Fatalf("stop n3: %s", r)
	}
	n1.awaitNodes(clusterLease, "n3 left", func(by map[string]oxios.Node) bool { return by["n3"].State == oxios.NodeLeft }, n3)
	// The streams n3 led elect new leaders first: a read may wait a moment.
	deadline := time.Now().Add(20 * time.Second)
	for r := n1.oxios("events", "--type", "node.left", "-o", "json"); !strings.Contains(r.stdout, `"node":"n3"`); r = n1.oxios("events", "--type", "node.left", "-o", "json") {
		if time.Now().After(deadline) {
			t.Fatalf("no node.left event for n3: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pid := n2.pidIfRunning()
	syscall.Kill(pid, syscall.SIGKILL)
	killed := time.Now()
	n1.awaitNodes(clusterLease+deadSlack, "n2 dead", func(by map[string]oxios.Node) bool { return by["n2"].State == oxios.NodeDead })
	t.Logf("n2 dead %s after SIGKILL (lease %s)", time.Since(killed).Round(time.Millisecond), clusterLease)
}

// clusterPlacement places agents by label and refuses an impossible
// placement; it drains a node and refuses to drain the last one.
func clusterPlacement(t *testing.T, n1, n2, n3 *env) {
	if r := n1.oxios("agent", "spawn", "--on-node", "n9", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "placement.node") || !strings.Contains(r.stderr, "no node n9") {
		t.Fatalf("spawn on no such node: %s", r)
	}
	if r := n1.oxios("agent", "spawn", "--on-label", "zone=mars", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "placement.labels") {
		t.Fatalf("spawn on no such label: %s", r)
	}
	rec := n2.spawnJSON("--on-label", "zone=z3", "--restart", "always", "--", "sleep", "300")
	if rec.Node != "n3" || !strings.Contains(rec.Placed, "labels zone=z3") {
		t.Fatalf("placed by label on %s (%q)", rec.Node, rec.Placed)
	}
	n3.waitAgent(rec.ID, func(r oxios.Record) bool { return r.State == oxios.Running })
	if r := n1.oxios("agent", "get", rec.ID); !strings.Contains(r.stdout, "Placed:") {
		t.Fatalf("agent get does not say where it was placed: %s", r)
	}
	if r := n1.oxios("agent", "kill", rec.ID); r.code != 0 {
		t.Fatalf("kill: %s", r)
	}
	// Drain the node of an agent placed freely: the agent moves, and
	// nothing more is placed on the node.
	free := n3.spawnJSON("--restart", "always", "--", "sleep", "300")
	n1.waitAgent(free.ID, func(r oxios.Record) bool { return r.State == oxios.Running })
	x := free.Node
	if r := n1.oxios("node", "drain", x, "--wait", "60s"); r.code != 0 || !strings.Contains(r.stdout, "node "+x+" drained") {
		t.Fatalf("drain %s: %s", x, r)
	}
	moved := n1.agent(free.ID)
	if moved.Node == x || moved.State != oxios.Running || !strings.HasPrefix(moved.Placed, "moved from "+x+" (drained)") {
		t.Fatalf("after draining %s its agent is %+v", x, moved)
	}
	if r := n1.oxios("node", "list"); !strings.Contains(r.stdout, "(drained)") {
		t.Fatalf("node list does not show the drained node: %s", r)
	}
	other := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[x]
	if r := n2.oxios("node", "drain", other, "--wait", "60s"); r.code != 0 {
		t.Fatalf("drain %s: %s", other, r)
	}
	last := map[string]bool{"n1": true, "n2": true, "n3": true}
	delete(last, x)
	delete(last, other)
	for n := range last {
		if r := n2.oxios("node", "drain", n); r.code == 0 || !strings.Contains(r.stderr, "last live node") {
			t.Fatalf("draining the last node %s: %s", n, r)
		}
	}
	for _, n := range []string{x, other} {
		if r := n1.oxios("node", "undrain", n); r.code != 0 {
			t.Fatalf("undrain %s: %s", n, r)
		}
	}
	if r := n1.oxios("agent", "kill", free.ID); r.code != 0 {
		t.Fatalf("kill: %s", r)
	}
}

func assertNoDaemon(t *testing.T, e *env) {
	t.Helper()
	if pid := e.pidIfRunning(); pid != 0 {
		t.Fatalf("a daemon (PID %d) was left running", pid)
	}
}

// clusterAgents spawns on n1 and lists, gets, follows, kills, waits and
// removes it from the others.
func clusterAgents(t *testing.T, n1, n2, n3 *env) {
	rec := n1.spawnJSON("--name", "ticker", "--on-node", "n1", "--", "sh", "-c", `i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done`)
	if rec.Node != "n1" {
		t.Fatalf("spawned on n1 but its record says %q", rec.Node)
	}
	var listed []oxios.Record
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := n3.oxios("agent", "list", "-o", "json")
		json.Unmarshal([]byte(r.stdout), &listed)
		if len(listed) == 1 && listed[0].ID == rec.ID && listed[0].Node == "n1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 does not list n1's agent: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := n3.oxios("agent", "list", "--node", "n2", "-o", "json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("--node n2 lists n1's agent: %s", r)
	}
	if r := n3.oxios("agent", "list"); !strings.Contains(r.stdout, "NODE") || !strings.Contains(r.stdout, " n1 ") {
		t.Fatalf("the table has no NODE column with n1: %s", r)
	}
	got := n3.waitAgent(rec.ID, func(r oxios.Record) bool { return r.State == oxios.Running && r.PID > 0 })
	if got.Node != "n1" {
		t.Fatalf("get from n3: %+v", got)
	}
	deadline = time.Now().Add(5 * time.Second)
	for r := n3.oxios("agent", "logs", rec.ID); !strings.Contains(r.stdout, "tick 3"); r = n3.oxios("agent", "logs", rec.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("n3 never showed n1's agent's log: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// logs -f from n3 streams from n1 until the agent ends.
	follow := exec.Command(binary, "agent", "logs", "-f", rec.ID)
	follow.Env = append(cleanEnv(), "OXIOS_HOME="+n3.home, "NO_COLOR=1")
	var out syncBuffer
	follow.Stdout = &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(out.String(), "tick")
	deadline = time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "tick") < before+5 {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f from n3 streams nothing new: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := n3.oxios("agent", "kill", rec.ID); r.code != 0 || !strings.Contains(r.stdout, "killed") {
		t.Fatalf("kill from n3: %s", r)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs -f ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		follow.Process.Kill()
		t.Fatal("logs -f from n3 did not end when n1's agent was killed")
	}
	if r := n2.oxios("agent", "wait", rec.ID); r.code != 3 {
		t.Fatalf("wait from n2 on a killed agent: %s (want exit 3)", r)
	}
	if r := n2.oxios("agent", "rm", rec.ID); r.code != 0 {
		t.Fatalf("rm from n2: %s", r)
	}
	deadline = time.Now().Add(5 * time.Second)
	for r := n1.oxios("agent", "get", rec.ID); r.code == 0; r = n1.oxios("agent", "get", rec.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 still has the agent n2 removed: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(n1.logPath(rec.ID)); !os.IsNotExist(err) {
		t.Fatalf("the removed agent's log is still on n1: %v", err)
	}
}

// clusterCron: a job added on n1 is listed on n3 with its node, and is
// disabled, triggered and removed from the others.
func clusterCron(t *testing.T, n1, n2, n3 *env) {
	if r := n1.oxios("cron", "add", "tick", "--schedule", "@daily", "--", "true"); r.code != 0 {
		t.Fatalf("cron add on n1: %s", r)
	}
	var jobs []oxios.CronStatus
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := n3.oxios("cron", "list", "-o", "json")
		json.Unmarshal([]byte(r.stdout), &jobs)
		if len(jobs) == 1 && jobs[0].Name == "tick" && jobs[0].Node == "n1" && jobs[0].NextRun != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 does not list n1's job: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := n1.oxios("cron", "add", "tick", "--schedule", "@hourly", "--", "true"); r.code == 0 {
		t.Fatalf("a second job named tick was added: %s", r)
	}
	if r := n3.oxios("cron", "add", "tick", "--schedule", "@hourly", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "node n1") {
		t.Fatalf("n3 added a job named as n1's: %s", r)
	}
	if r := n3.oxios("cron", "disable", "tick"); r.code != 0 {
		t.Fatalf("disable from n3: %s", r)
	}
	if r := n1.oxios("cron", "get", "tick", "-o", "json"); !strings.Contains(r.stdout, `"enabled": false`) {
		t.Fatalf("n1's job after a disable from n3: %s", r)
	}
	r := n2.oxios("cron", "trigger", "tick", "-o", "json")
	var fired oxios.CronFired
	if err := json.Unmarshal([]byte(r.stdout), &fired); err != nil || fired.AgentID == "" {
		t.Fatalf("trigger from n2: %s", r)
	}
	// Fired where it was asked, and placed like any spawn.
	if rec := n1.agent(fired.AgentID); rec.Spec.Labels["oxios.cron"] != "tick" || rec.Placed == "" {
		t.Fatalf("the triggered run: %+v", rec)
	}
	if r := n3.oxios("cron", "rm", "tick"); r.code != 0 {
		t.Fatalf("rm from n3: %s", r)
	}
	if r := n1.oxios("cron", "get", "tick"); r.code == 0 {
		t.Fatalf("n1 still has the job n3 removed: %s", r)
	}
}

// noClusterSecrets looks, as an attacker with a viewer's reach would, for
// the cluster key and the passwords derived from it in everything a node
// shows or logs: none is there.
func noClusterSecrets(t *testing.T, nodes []*env) {
	hexKey, _ := os.ReadFile(filepath.Join(nodes[0].home, "secrets", "cluster.key"))
	key, err := cluster.LoadKey(filepath.Join(nodes[0].home, "secrets", "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{strings.TrimSpace(string(hexKey)), cluster.Derive(key, "route"), cluster.Derive(key, "client")}
	for i, e := range nodes {
		var seen strings.Builder
		log, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
		seen.Write(log)
		for _, path := range []string{"/api/v1/system", "/api/v1/nodes", "/api/v1/overview", "/api/v1/agents", "/api/v1/audit", "/metrics"} {
			_, body := e.get(path, e.token())
			seen.WriteString(body)
		}
		for _, args := range [][]string{{"config", "show"}, {"status", "-o", "json"}, {"events", "-o", "json"}} {
			r := e.oxios(args...)
			seen.WriteString(r.stdout + r.stderr)
		}
		for j, s := range secrets {
			if strings.Contains(seen.String(), s) {
				t.Fatalf("n%d shows secret %d of the cluster key", i+1, j)
			}
		}
	}
}

// clusterAudit appends from every node at once, then verifies the one
// chain on each.
func clusterAudit(t *testing.T, nodes []*env) {
	var wg sync.WaitGroup
	for i, e := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 4 {
				if r := e.oxios("state", "put", "audit", fmt.Sprintf("k%d-%d", i, j), `{"v":1}`); r.code != 0 {
					t.Errorf("state put on n%d: %s", i+1, r)
				}
				if r := e.oxios("agent", "spawn", "--wait", "--", "true"); r.code != 0 {
					t.Errorf("spawn on n%d: %s", i+1, r)
				}
			}
		}()
	}
	wg.Wait()
	for i, e := range nodes {
		r := e.oxios("audit", "verify", "-o", "json")
		var v oxios.AuditVerdict
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || !v.OK || v.Entries < 12 { // 12 spawns at least
			log, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
			t.Fatalf("audit verify on n%d: %+v %s\nits log:\n%s", i+1, v, r, log)
		}
	}
	r := nodes[0].oxios("audit", "list", "--all", "-o", "json")
	var entries []oxios.AuditEntry
	json.Unmarshal([]byte(r.stdout), &entries)
	seen := map[string]int{}
	for _, e := range entries {
		seen[e.Node]++
	}
	if seen["n1"] == 0 || seen["n2"] == 0 || seen["n3"] == 0 {
		t.Fatalf("audit entries by node: %v", seen)
	}
}

// clusterTokens: n1's admin token works on n2; a token revoked on one
// node fails on all three at once.
func clusterTokens(t *testing.T, nodes []*env) {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if code, body := n2.get("/api/v1/agents", n1.token()); code != 200 {
		t.Fatalf("n1's admin token on n2: %d %s", code, body)
	}
	r := n1.oxios("token", "list", "-o", "json")
	for _, name := range []string{"admin@n1", "admin@n2", "admin@n3"} {
		if !strings.Contains(r.stdout, `"name": "`+name+`"`) {
			t.Fatalf("token list does not name %s: %s", name, r)
		}
	}
	r = n1.oxios("token", "create", "ci", "--role", "viewer", "-o", "json")
	var created oxios.TokenCreated
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.Secret == "" {
		t.Fatalf("token create: %s", r)
	}
	for _, e := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for code, _ := e.get("/api/v1/agents", created.Secret); code != 200; code, _ = e.get("/api/v1/agents", created.Secret) {
			if time.Now().After(deadline) {
				t.Fatalf("a new token does not work on %s: %d", e.listen, code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := n3.oxios("token", "revoke", "ci"); r.code != 0 {
		t.Fatalf("revoke on n3: %s", r)
	}
	revoked := time.Now()
	for i, e := range nodes {
		for code, _ := e.get("/api/v1/agents", created.Secret); code != 401; code, _ = e.get("/api/v1/agents", created.Secret) {
			if time.Since(revoked) > time.Second {
				t.Fatalf("the revoked token still works on n%d: %d", i+1, code)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("revoked on all three within %s", time.Since(revoked).Round(time.Millisecond))
}

// The dashboard of any node shows the cluster: the Nodes page lists the
// three nodes alive, and the overview's node filter narrows the running
// agents to one node's.
func TestClusterDashboard(t *testing.T) {
	routes := backbonetest.FreePorts(t, 3)
	nodes := clusterOf(t, 3, embeddedConf(routes))
	ctx := browser(t)
	startAll(t, nodes)
	n1, n2 := nodes[0], nodes[1]
	rec := n2.spawnJSON("--name", "on-n2", "--on-node", "n2", "--", "sleep", "300")
	defer n1.oxios("agent", "kill", rec.ID)
	n1.loginLink(t, ctx)

	do(t, ctx, "nodes page", goTo("#/nodes"), visible(`#nodes-table tr[data-node="n3"] .badge.alive`))
	if n := eval[int](t, ctx, `document.querySelectorAll("#nodes-table tr[data-node] .badge.alive").length`); n != 3 {
		t.Fatalf("the Nodes page shows %d alive nodes, want 3", n)
	}
	if self := eval[string](t, ctx, `document.querySelector('#nodes-table tr[data-node="n1"] td').textContent`); self != "n1 *" {
		t.Fatalf("the answering node is shown as %q", self)
	}
	shot(t, ctx, "nodes")

	do(t, ctx, "overview", goTo("#/overview"), visible("#ov-nodes"))
	until(t, ctx, "n2's agent on the overview", `document.querySelector("#page").textContent.includes("`+rec.ID[len(rec.ID)-8:]+`")`, 10*time.Second)
	do(t, ctx, "filter n1", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(s => { s.value = "n1"; return s.dispatchEvent(new Event("change")) })(document.querySelector("#ov-node"))`)(ctx, tg)
		return err
	}))
	until(t, ctx, "n1 runs nothing", `document.querySelector("#page").textContent.includes("Running agents (0)")`, 10*time.Second)
	shot(t, ctx, "overview-n1")

	// A drained node says so, and its button undrains it.
	if r := n1.oxios("node", "drain", "n3"); r.code != 0 || !strings.Contains(r.stdout, "node n3 drained") {
		t.Fatalf("drain n3: %s", r)
	}
	do(t, ctx, "drained n3", goTo("#/nodes"), visible(`#nodes-table tr[data-node="n3"] .badge.drained`))
	shot(t, ctx, "nodes-drained")
	do(t, ctx, "undrain n3", click(`#nodes-table tr[data-node="n3"] button[data-action="undrain"]`))
	until(t, ctx, "n3 undrained", `!document.querySelector('#nodes-table tr[data-node="n3"] .badge.drained')`, 10*time.Second)
	if r := n2.oxios("node", "list", "-o", "json"); strings.Contains(r.stdout, `"drained": true`) {
		t.Fatalf("n3 still drained after the dashboard's undrain: %s", r)
	}
}

// A single node with an audit trail becomes the first node of a cluster:
// 'cluster init' adopts its audit key; a start with its single-node store
// is refused (a cluster would delete that store), naming what to do; with
// the store moved aside the cluster starts, and the old trail, from the
// backup taken before, still verifies.
func TestSingleNodeBecomesFirstNode(t *testing.T) {
	routes := backbonetest.FreePorts(t, 3)
	nodes := clusterOf(t, 3, embeddedConf(routes))
	n1 := nodes[0]
	// clusterOf wrote the key; this home is a single node first, with its
	// own audit key.
	os.Remove(filepath.Join(n1.home, "secrets", "cluster.key"))
	conf := filepath.Join(n1.home, "config.toml")
	clusterConf, _ := os.ReadFile(conf)
	os.WriteFile(conf, []byte("node = \"n1\"\n"), 0o600)
	n1.start()
	if r := n1.oxios("agent", "spawn", "--wait", "--", "true"); r.code != 0 {
		t.Fatalf("spawn on the single node: %s", r)
	}
	archive := filepath.Join(t.TempDir(), "single.tar.gz")
	if r := n1.oxios("backup", archive); r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	if r := n1.oxios("stop"); r.code != 0 {
		t.Fatal(r)
	}
	r := n1.oxios("cluster", "init")
	if r.code != 0 || !strings.Contains(r.stdout, "audit key") {
		t.Fatalf("cluster init on a home with an audit trail: %s", r)
	}
	key, _ := os.ReadFile(filepath.Join(n1.home, "secrets", "cluster.key"))
	own, _ := os.ReadFile(filepath.Join(n1.home, "secrets", "audit.key"))
	if string(key) != string(own) {
		t.Fatal("the cluster key is not the home's audit key")
	}
	for _, e := range nodes[1:] {
		os.WriteFile(filepath.Join(e.home, "secrets", "cluster.key"), key, 0o600)
	}
	os.WriteFile(conf, clusterConf, 0o600)
	if r := n1.oxios("start", "--listen", n1.listen); r.code != 2 || !strings.Contains(r.stderr, "holds the JetStream store of a single node") {
		t.Fatalf("a clustered start on a single node's store: %s (want exit 2 saying why)", r)
	}
	if err := os.Rename(filepath.Join(n1.home, "data"), filepath.Join(n1.home, "data.single")); err != nil {
		t.Fatal(err)
	}
	startAll(t, nodes)
	for i, e := range nodes {
		if r := e.oxios("audit", "verify"); r.code != 0 {
			t.Fatalf("audit verify on n%d: %s", i+1, r)
		}
	}
	// The old trail, restored from the backup onto a single node.
	old := anotherEnv(t)
	if r := old.oxios("restore", archive); r.code != 0 {
		t.Fatalf("restore the single node's backup: %s", r)
	}
	old.start()
	old.stopAtEnd()
	if r := old.oxios("audit", "verify", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"ok": true`) {
		t.Fatalf("the single node's trail from its backup: %s", r)
	}
}
