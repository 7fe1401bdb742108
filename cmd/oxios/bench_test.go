package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

// BenchmarkStartToReady measures what a user waits for: the wall time of
// `oxios start` (CLI start, config, launching the detached daemon, its boot,
// and the readiness probe) until it returns with the daemon ready. It also
// reports the daemon's resident memory after it has idled for a second.
//
//	go test -run '^$' -bench StartToReady -benchtime 20x ./cmd/oxios
func BenchmarkStartToReady(b *testing.B) {
	needBinary(b)
	home := filepath.Join(b.TempDir(), "home")
	// The daemon binds its address itself, as for a user who runs oxios
	// start: a socket handed over would measure another path (bound before
	// the daemon runs; measured: 10 ms sooner ready, 2 MB more resident).
	// The port is the kernel's choice,
	// let go just before; a port taken meanwhile fails the run, loudly.
	ln := heldListener(b)
	listen := ln.Addr().String()
	ln.Close()
	envv := append(cleanEnv(), "OXIOS_HOME="+home)
	run := func(args ...string) string {
		cmd := exec.Command(binary, args...)
		cmd.Env = envv
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("oxios %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	defer func() { // whatever happens below, no daemon is left running
		cmd := exec.Command(binary, "stop")
		cmd.Env = envv
		cmd.Run()
	}()
	// The first start creates the home and the admin token; measure the
	// ordinary case after it.
	run("start", "--listen", listen)
	run("stop")

	var total time.Duration
	var rssKB int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		out := run("start", "--listen", listen)
		total += time.Since(t0)
		b.StopTimer()
		if i == 0 {
			pid := 0
			fmt.Sscanf(out[strings.Index(out, "PID ")+4:], "%d", &pid)
			time.Sleep(time.Second) // let it idle: this measures idle memory
			rssKB = vmRSS(b, pid)
		}
		run("stop")
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/ready")
	b.ReportMetric(float64(rssKB)/1024, "MB-idle-RSS")
}

func vmRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkThousandAgents runs 1,000 `sleep` agents in a real daemon,
// spawned through the API by 8 concurrent clients. It reports the time from
// the first spawn until the scheduler counts all of them running, and the
// daemon's resident memory and CPU use while they idle for 5 seconds.
//
//	go test -run '^$' -bench ThousandAgents -benchtime 1x ./cmd/oxios
func BenchmarkThousandAgents(b *testing.B) {
	needBinary(b)
	const n = 1000
	var envv []string
	defer func() { // whatever happens below, no daemon is left running
		cmd := exec.Command(binary, "stop")
		cmd.Env = envv
		cmd.Run()
	}()
	var ln *net.TCPListener
	run := func(args ...string) string {
		cmd := exec.Command(binary, args...)
		cmd.Env = envv
		defer handOver(b, cmd, ln)()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("oxios %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for b.Loop() {
		b.StopTimer()
		// A new home each time, so no agent of an earlier round is recovered.
		home := filepath.Join(b.TempDir(), "home")
		ln = heldListener(b)
		listen := ln.Addr().String()
		envv = append(cleanEnv(), "OXIOS_HOME="+home)
		os.MkdirAll(home, 0o700)
		os.WriteFile(filepath.Join(home, "config.toml"), []byte("[scheduler]\nmax_running = 2000\n"), 0o600)
		// The floor, measured now: n bare sleep processes from os/exec.
		t0 := time.Now()
		cmds := make([]*exec.Cmd, n)
		for i := range cmds {
			cmds[i] = exec.Command("sleep", "3600")
			if err := cmds[i].Start(); err != nil {
				b.Fatal(err)
			}
		}
		bare := time.Since(t0)
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		out := run("start", "--listen", listen)
		pid := 0
		fmt.Sscanf(out[strings.Index(out, "PID ")+4:], "%d", &pid)
		tok, _ := os.ReadFile(filepath.Join(home, "secrets", "admin.token"))
		c := client.New("http://"+listen, strings.TrimSpace(string(tok)))
		ctx := context.Background()
		b.StartTimer()

		// Count agent.started events, subscribed before the first spawn.
		started := make(chan struct{}, n)
		sctx, stopEvents := context.WithCancel(ctx)
		zero := uint64(0) // a new home: every agent.started is one of these
		go c.Events(sctx, client.EventsOptions{Types: []string{"agent.started"}, Since: &zero, Follow: true}, func(oxios.Event) error {
			started <- struct{}{}
			return nil
		})
		t0 = time.Now()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					if _, err := c.Spawn(ctx, oxios.Spec{Command: "sleep", Args: []string{"3600"}}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		for i := range n {
			select {
			case <-started:
			case <-time.After(2 * time.Minute):
				b.Fatalf("%d of %d agents running after 2 minutes", i, n)
			}
		}
		all := time.Since(t0)
		b.StopTimer()
		wg.Wait()
		stopEvents()

		time.Sleep(time.Second)
		cpu0, w0 := cpuTicks(b, pid), time.Now()
		time.Sleep(5 * time.Second)
		cpu := float64(cpuTicks(b, pid)-cpu0) / 100 / time.Since(w0).Seconds() * 100 // USER_HZ is 100
		b.ReportMetric(float64(all.Milliseconds()), "ms-all-running")
		b.ReportMetric(float64(bare.Milliseconds()), "ms-bare")
		b.ReportMetric(float64(all)/float64(bare), "x-bare")
		b.ReportMetric(float64(vmRSS(b, pid))/1024, "MB-RSS")
		b.ReportMetric(cpu, "%CPU-idle")
		t1 := time.Now()
		run("stop")
		b.ReportMetric(float64(time.Since(t1).Milliseconds()), "ms-stop")
		b.StartTimer()
	}
}

// cpuTicks is the user+system CPU time of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+1:])
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// needBinary skips a benchmark under -short, where the binary is not built.
func needBinary(b *testing.B) {
	if binary == "" {
		b.Skip("needs the built binary (not built with -short)")
	}
}

// BenchmarkClusterIdle measures what a node of a three-node embedded
// cluster costs while nothing runs (its heartbeats, the others' watched,
// the routes and the replicated streams), next to a single node: CPU over
// 10 s of idling after 3 s of settling, and resident memory, averaged over
// the nodes.
//
//	go test -run '^$' -bench ClusterIdle -benchtime 1x ./cmd/oxios
func BenchmarkClusterIdle(b *testing.B) {
	needBinary(b)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for b.Loop() {
				cpu, rss := idleNodes(b, n)
				b.ReportMetric(cpu, "%CPU-idle/node")
				b.ReportMetric(rss, "MB-RSS/node")
			}
		})
	}
}

// idleNodes starts n nodes (a cluster if n > 1), lets them idle, and
// returns their mean CPU use and resident memory; they are stopped after.
func idleNodes(b *testing.B, n int) (cpuPct, rssMB float64) {
	dir := b.TempDir()
	routes := backbonetest.FreePorts(b, n)
	apis := backbonetest.FreePorts(b, n)
	homes := make([]string, n)
	for i := range n {
		homes[i] = filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(filepath.Join(homes[i], "secrets"), 0o700)
		conf := fmt.Sprintf("node = \"n%d\"\n", i+1)
		if n > 1 {
			conf = embeddedConf(routes)(i + 1)
		}
		os.WriteFile(filepath.Join(homes[i], "config.toml"), []byte(conf), 0o600)
	}
	run := func(home string, args ...string) string {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(cleanEnv(), "OXIOS_HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Errorf("oxios %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run(homes[0], "cluster", "init")
	key, _ := os.ReadFile(filepath.Join(homes[0], "secrets", "cluster.key"))
	pids := make([]int, n)
	var wg sync.WaitGroup
	for i, h := range homes {
		os.WriteFile(filepath.Join(h, "secrets", "cluster.key"), key, 0o600)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := run(h, "start", "--listen", apis[i])
			fmt.Sscanf(out[strings.Index(out, "PID ")+4:], "%d", &pids[i])
		}()
	}
	wg.Wait()
	defer func() {
		for _, h := range homes {
			wg.Add(1)
			go func() { defer wg.Done(); run(h, "stop") }()
		}
		wg.Wait()
	}()
	if b.Failed() {
		b.FailNow()
	}
	time.Sleep(3 * time.Second)
	t0, w0 := make([]int, n), time.Now()
	for i, pid := range pids {
		t0[i] = cpuTicks(b, pid)
	}
	time.Sleep(10 * time.Second)
	for i, pid := range pids {
		cpuPct += float64(cpuTicks(b, pid)-t0[i]) / 100 / time.Since(w0).Seconds() * 100 // USER_HZ is 100
		rssMB += float64(vmRSS(b, pid)) / 1024
	}
	return cpuPct / float64(n), rssMB / float64(n)
}
