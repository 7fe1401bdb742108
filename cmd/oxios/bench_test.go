package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartToReady measures what a user waits for: the wall time of
// `oxios start` (CLI start, config, launching the detached daemon, its boot,
// and the readiness probe) until it returns with the daemon ready. It also
// reports the daemon's resident memory after it has idled for a second.
//
//	go test -run '^$' -bench StartToReady -benchtime 20x ./cmd/oxios
func BenchmarkStartToReady(b *testing.B) {
	home := filepath.Join(b.TempDir(), "home")
	listen := freeAddr(b)
	envv := append(cleanEnv(), "OXIOS_HOME="+home)
	oxios := func(args ...string) string {
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
	oxios("start", "--listen", listen)
	oxios("stop")

	var total time.Duration
	var rssKB int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		out := oxios("start", "--listen", listen)
		total += time.Since(t0)
		b.StopTimer()
		if i == 0 {
			pid := 0
			fmt.Sscanf(out[strings.Index(out, "PID ")+4:], "%d", &pid)
			time.Sleep(time.Second) // let it idle: this measures idle memory
			rssKB = vmRSS(b, pid)
		}
		oxios("stop")
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
