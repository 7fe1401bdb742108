package supervisor

import (
	"context"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
)

// benchEnv is newEnv for benchmarks: the same real backbone and bus.
func benchEnv(b *testing.B, maxRunning int) *env {
	e := &env{home: b.TempDir(), lim: scheduler.Limits{MaxRunning: maxRunning, MaxRunningLLM: 1}}
	return e.boot(b)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// reportMs reports the median and 99th percentile of lat in milliseconds.
func reportMs(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// pollRunning waits until the agent is running with a PID other than old.
func (e *env) pollRunning(tb testing.TB, id string, old int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, _ := e.sup.Get(id); r.State == Running && r.PID != old {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent %s did not run", id)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// BenchmarkSpawnToRunning measures the time from Spawn to the agent's
// process running and recorded (persisted, event published).
func BenchmarkSpawnToRunning(b *testing.B) {
	e := benchEnv(b, 1000)
	ctx := context.Background()
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		r, err := e.sup.Spawn(ctx, Spec{Command: "sleep", Args: []string{"3600"}})
		if err != nil {
			b.Fatal(err)
		}
		e.pollRunning(b, r.ID, 0)
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		e.sup.Kill(ctx, r.ID, 0)
		b.StartTimer()
	}
	reportMs(b, lat)
}

// BenchmarkFirstRestart measures a crash (SIGKILL of the agent's process)
// to the agent running again, when the restart is a first one (the run
// before it was stable), which has no backoff.
func BenchmarkFirstRestart(b *testing.B) {
	e := benchEnv(b, 10)
	ctx := context.Background()
	r, err := e.sup.Spawn(ctx, Spec{Command: "sleep", Args: []string{"3600"},
		Restart: Restart{Policy: Always, MaxRestarts: 1000000, ResetAfter: "1ms"}})
	if err != nil {
		b.Fatal(err)
	}
	e.pollRunning(b, r.ID, 0)
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		time.Sleep(2 * time.Millisecond) // a stable run: longer than reset_after
		cur, _ := e.sup.Get(r.ID)
		pid := cur.PID
		b.StartTimer()
		t0 := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		e.pollRunning(b, r.ID, pid)
		lat = append(lat, time.Since(t0))
	}
	reportMs(b, lat)
}

// BenchmarkStartMany spawns N sleep agents at once and measures the time
// until all of them run. Each round first starts N bare sleep processes
// with os/exec (nothing else: no log, no wait, no record) and reports the
// ratio of the two, so the comparison is made on the machine as it is at
// that moment.
func BenchmarkStartMany(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, mode := range []string{sandbox.Enforce, sandbox.Off} {
			b.Run(itoa(n)+"-"+mode, func(b *testing.B) { startMany(b, n, mode) })
		}
	}
}

// startMany is one StartMany case: n agents with the sandbox in mode.
func startMany(b *testing.B, n int, mode string) {
	{
		{
			var total, bare time.Duration
			for b.Loop() {
				b.StopTimer()
				bare += bareStart(b, n)
				e := benchEnv(b, n)
				b.StartTimer()
				t0 := time.Now()
				ids := make(chan string, n)
				var wg sync.WaitGroup
				for w := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < n; i += 8 {
							r, err := e.sup.Spawn(context.Background(), Spec{Command: "sleep", Args: []string{"3600"}, Sandbox: &sandbox.Spec{Mode: mode}})
							if err != nil {
								b.Error(err)
								return
							}
							ids <- r.ID
						}
					}()
				}
				wg.Wait()
				close(ids)
				for id := range ids {
					e.pollRunning(b, id, 0)
				}
				total += time.Since(t0)
				b.StopTimer()
				e.close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-all-running")
			b.ReportMetric(float64(bare.Milliseconds())/float64(b.N), "ms-bare")
			b.ReportMetric(float64(total)/float64(bare), "x-bare")
		}
	}
}

// bareStart starts n sleep processes with os/exec, nothing else, and
// returns how long that took; it kills them before returning.
func bareStart(b *testing.B, n int) time.Duration {
	t0 := time.Now()
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command("sleep", "3600")
		cmds[i].SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmds[i].Start(); err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(t0)
	for _, c := range cmds {
		c.Process.Kill()
		c.Wait()
	}
	return d
}

func itoa(n int) string {
	if n >= 1000 {
		return string(rune('0'+n/1000)) + "k"
	}
	return string(rune('0'+n/100)) + "00"
}

// BenchmarkSandboxSpawn measures spawn to running with the default
// sandbox (enforce: Landlock, no capabilities, rlimits at a ptrace stop)
// and without one (mode off), alternating, so both are measured in the
// same moments of the machine.
func BenchmarkSandboxSpawn(b *testing.B) {
	e := benchEnv(b, 1000)
	ctx := context.Background()
	lat := map[string][]time.Duration{}
	modes := []string{sandbox.Off, sandbox.Enforce}
	for b.Loop() {
		for _, mode := range modes {
			t0 := time.Now()
			r, err := e.sup.Spawn(ctx, Spec{Command: "sleep", Args: []string{"3600"}, Sandbox: &sandbox.Spec{Mode: mode}})
			if err != nil {
				b.Fatal(err)
			}
			e.pollRunning(b, r.ID, 0)
			lat[mode] = append(lat[mode], time.Since(t0))
			b.StopTimer()
			e.sup.Kill(ctx, r.ID, 0)
			b.StartTimer()
		}
	}
	off, on := percentile(lat[sandbox.Off], 0.5), percentile(lat[sandbox.Enforce], 0.5)
	b.ReportMetric(float64(off.Microseconds())/1000, "off-p50-ms")
	b.ReportMetric(float64(percentile(lat[sandbox.Off], 0.99).Microseconds())/1000, "off-p99-ms")
	b.ReportMetric(float64(on.Microseconds())/1000, "sandbox-p50-ms")
	b.ReportMetric(float64(percentile(lat[sandbox.Enforce], 0.99).Microseconds())/1000, "sandbox-p99-ms")
	b.ReportMetric(float64((on-off).Microseconds())/1000, "added-p50-ms")
}

// BenchmarkSandboxStart100 spawns 100 agents at once and measures the time
// until all run, with the default sandbox and without, alternating rounds.
func BenchmarkSandboxStart100(b *testing.B) {
	total := map[string]time.Duration{}
	for b.Loop() {
		for _, mode := range []string{sandbox.Off, sandbox.Enforce} {
			b.StopTimer()
			e := benchEnv(b, 100)
			b.StartTimer()
			t0 := time.Now()
			ids := make(chan string, 100)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < 100; i += 8 {
						r, err := e.sup.Spawn(context.Background(), Spec{Command: "sleep", Args: []string{"3600"}, Sandbox: &sandbox.Spec{Mode: mode}})
						if err != nil {
							b.Error(err)
							return
						}
						ids <- r.ID
					}
				}()
			}
			wg.Wait()
			close(ids)
			for id := range ids {
				e.pollRunning(b, id, 0)
			}
			total[mode] += time.Since(t0)
			b.StopTimer()
			e.close()
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(total[sandbox.Off].Milliseconds())/float64(b.N), "off-ms")
	b.ReportMetric(float64(total[sandbox.Enforce].Milliseconds())/float64(b.N), "sandbox-ms")
}
