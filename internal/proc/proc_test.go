package proc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, script string, env ...string) (*Process, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "agent.log")
	p, err := Start(Spec{Command: "/bin/sh", Args: []string{"-c", script}, Env: env, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-p.PID, syscall.SIGKILL) })
	return p, logPath
}

func wait(t *testing.T, p *Process) Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// readLog polls until the log holds want (the copier may trail the exit).
func readLog(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExitCodeAndLog(t *testing.T) {
	p, logPath := start(t, `echo out; echo err >&2; exit 3`)
	e := wait(t, p)
	if e.Code == nil || *e.Code != 3 || e.Success() || e.String() != "exit status 3" {
		t.Fatalf("exit %+v", e)
	}
	log := readLog(t, logPath, "err")
	if !strings.Contains(log, "out\n") || !strings.Contains(log, "err\n") {
		t.Fatalf("log %q", log)
	}
}

func TestEnvironmentIsExactlyTheSpec(t *testing.T) {
	os.Setenv("OXIOS_TEST_SECRET", "leak")
	defer os.Unsetenv("OXIOS_TEST_SECRET")
	p, logPath := start(t, `env`, "ONLY=this", "PATH=/usr/bin:/bin")
	wait(t, p)
	log := readLog(t, logPath, "ONLY=this")
	if !strings.Contains(log, "ONLY=this") || strings.Contains(log, "OXIOS_TEST_SECRET") {
		t.Fatalf("environment:\n%s", log)
	}
}

// Stop reaches grandchildren, and escalates to SIGKILL for a process that
// ignores SIGTERM.
func TestStopKillsTheGroup(t *testing.T) {
	p, logPath := start(t, `trap "" TERM; sleep 100 & echo $!; wait`)
	grandchild := 0
	deadline := time.Now().Add(5 * time.Second)
	for grandchild == 0 && time.Now().Before(deadline) {
		line := strings.TrimSpace(readLog(t, logPath, "\n"))
		grandchild, _ = strconv.Atoi(line)
	}
	if grandchild == 0 {
		t.Fatal("no grandchild PID")
	}
	killed := p.Stop(syscall.SIGTERM, 200*time.Millisecond)
	e := wait(t, p)
	if !killed || e.Signal != "SIGKILL" {
		t.Fatalf("killed=%v exit=%+v, want SIGKILL after the grace period", killed, e)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(grandchild, 0)
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(grandchild) + "/stat")
		if errors.Is(err, syscall.ESRCH) || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived the group kill", grandchild)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGracefulStop(t *testing.T) {
	p, logPath := start(t, `trap "exit 0" TERM; echo ready; while :; do sleep 0.01; done`)
	if !strings.Contains(readLog(t, logPath, "ready"), "ready") {
		t.Fatal("the process did not set its trap")
	}
	killed := p.Stop(syscall.SIGTERM, 5*time.Second)
	e := wait(t, p)
	if killed || !e.Success() {
		t.Fatalf("a process that exits 0 on SIGTERM: killed=%v exit=%+v", killed, e)
	}
}

func TestStartTimeIdentifiesTheProcess(t *testing.T) {
	p, _ := start(t, `sleep 100`)
	if p.StartTime == 0 || !Same(p.PID, p.StartTime) {
		t.Fatalf("start time %d not recognised", p.StartTime)
	}
	if Same(p.PID, p.StartTime+1) {
		t.Fatal("a different start time passed for the same process")
	}
	p.Stop(syscall.SIGKILL, 0)
	wait(t, p)
}

func TestStartErrors(t *testing.T) {
	_, err := Start(Spec{Command: "/nonexistent/agent", LogPath: filepath.Join(t.TempDir(), "a.log")})
	if err == nil {
		t.Fatal("started a command that does not exist")
	}
}
