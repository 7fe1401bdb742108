package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/leaktest"
	"github.com/oxios/oxios/internal/logfile"
)

func init() {
	if os.Getenv("OXIOS_TEST_LINGER") != "" {
		runtime.LockOSThread() // the main goroutine stays on the main thread
	}
}

// TestMain lets the test binary play a daemon in a subprocess: with
// OXIOS_TEST_HOLD set it takes the PID file at that path, says so on stdout,
// and waits (ignoring SIGTERM when OXIOS_TEST_STUBBORN is set).
func TestMain(m *testing.M) {
	if path := os.Getenv("OXIOS_TEST_REDIRECT"); path != "" {
		l, err := logfile.Open(path, logfile.Options{MaxSize: 64, MaxFiles: 1, OnRotate: RedirectStdio})
		if err != nil {
			os.Exit(1)
		}
		l.Write([]byte(strings.Repeat("x", 60) + "\n"))
		l.Write([]byte("this line rotates the log\n"))
		fmt.Fprintln(os.Stderr, "stderr after rotation")
		fmt.Fprintln(os.Stdout, "stdout after rotation")
		os.Exit(0)
	}
	if path := os.Getenv("OXIOS_TEST_LINGER"); path != "" {
		// As a daemon killed while a thread is in an fsync: its main
		// thread is gone (a zombie), the rest holds the lock a while.
		if _, err := Acquire(path, "127.0.0.1:1"); err != nil {
			os.Exit(1)
		}
		fmt.Println("held")
		go func() {
			time.Sleep(700 * time.Millisecond)
			syscall.Exit(0) // exit_group: the rest goes
		}()
		syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0) // this thread only: main, locked in init
	}
	if path := os.Getenv("OXIOS_TEST_HOLD"); path != "" {
		if os.Getenv("OXIOS_TEST_STUBBORN") != "" {
			signal.Ignore(syscall.SIGTERM)
		}
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		p, err := Acquire(path, "127.0.0.1:1")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		if os.Getenv("OXIOS_TEST_STUBBORN") == "" {
			<-ch
			p.Release()
			os.Exit(0)
		}
		select {}
	}
	leaktest.VerifyTestMain(m)
}

// holder starts a subprocess that holds the PID file at path.
func holder(t *testing.T, path string, stubborn bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OXIOS_TEST_HOLD="+path)
	if stubborn {
		cmd.Env = append(cmd.Env, "OXIOS_TEST_STUBBORN=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "held" {
		t.Fatalf("holder did not take the PID file: %q %v", line, err)
	}
	return cmd
}

func TestPIDFileStates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	st, err := ReadStatus(path)
	if err != nil || st.State != Stopped {
		t.Fatalf("no file: %+v %v, want stopped", st, err)
	}

	p, err := Acquire(path, "127.0.0.1:4200")
	if err != nil {
		t.Fatal(err)
	}
	st, err = ReadStatus(path)
	if err != nil || st.State != Running || st.PID != os.Getpid() || st.Listen != "127.0.0.1:4200" {
		t.Fatalf("held: %+v %v", st, err)
	}
	if _, err := Acquire(path, "x"); !errors.As(err, new(*RunningError)) || !strings.Contains(err.Error(), fmt.Sprintf("already running (PID %d)", os.Getpid())) {
		t.Fatalf("second Acquire: %v, want already running", err)
	}
	if _, removed, _ := RemoveStale(path); removed {
		t.Fatal("RemoveStale removed a held PID file")
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Release left the file: %v", err)
	}
}

// A PID file naming a live process that does not hold the lock is stale:
// a recycled PID never passes for the daemon.
func TestRecycledPIDIsStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	// This test process is certainly alive.
	os.WriteFile(path, []byte(fmt.Sprintf("%d\n127.0.0.1:4200\n", os.Getpid())), 0o600)
	st, err := ReadStatus(path)
	if err != nil || st.State != Stale || st.PID != os.Getpid() {
		t.Fatalf("got %+v %v, want stale with PID %d", st, err, os.Getpid())
	}
	p, err := Acquire(path, "127.0.0.1:4300")
	if err != nil {
		t.Fatalf("Acquire over a stale file: %v", err)
	}
	defer p.Release()
	if st, _ := ReadStatus(path); st.State != Running || st.Listen != "127.0.0.1:4300" {
		t.Fatalf("after takeover: %+v", st)
	}
}

func TestLockDiesWithProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	cmd := holder(t, path, false)
	st, err := ReadStatus(path)
	if err != nil || st.State != Running || st.PID != cmd.Process.Pid {
		t.Fatalf("held by child: %+v %v", st, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	st, err = ReadStatus(path)
	if err != nil || st.State != Stale || st.PID != cmd.Process.Pid {
		t.Fatalf("after SIGKILL: %+v %v, want stale", st, err)
	}
	pid, removed, err := RemoveStale(path)
	if err != nil || !removed || pid != cmd.Process.Pid {
		t.Fatalf("RemoveStale: %d %v %v", pid, removed, err)
	}
}

func TestStopGraceful(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	cmd := holder(t, path, false)
	res, err := Stop(context.Background(), path, 5*time.Second)
	if err != nil || !res.WasRunning || res.Killed || res.PID != cmd.Process.Pid {
		t.Fatalf("Stop: %+v %v", res, err)
	}
	if st, _ := ReadStatus(path); st.State != Stopped {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	cmd := holder(t, path, true)
	res, err := Stop(context.Background(), path, 200*time.Millisecond)
	if err != nil || !res.Killed || res.PID != cmd.Process.Pid {
		t.Fatalf("Stop: %+v %v, want killed", res, err)
	}
	if st, _ := ReadStatus(path); st.State != Stopped {
		t.Fatalf("after kill: %+v, want stopped (stale file removed)", st)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("holder exit: %v, want killed", err)
	}
}

func TestStopWhenNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	res, err := Stop(context.Background(), path, time.Second)
	if err != nil || res.WasRunning || res.StaleRemoved {
		t.Fatalf("no file: %+v %v", res, err)
	}
	os.WriteFile(path, []byte("12345\n"), 0o600)
	res, err = Stop(context.Background(), path, time.Second)
	if err != nil || !res.StaleRemoved || res.PID != 12345 {
		t.Fatalf("stale: %+v %v", res, err)
	}
}

func TestNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET Notify must do nothing: %v", err)
	}
}

func TestSignalContext(t *testing.T) {
	got := make(chan os.Signal, 2)
	forced := make(chan struct{})
	ctx, stop := SignalContext(context.Background(), func(s os.Signal) { got <- s }, func() { close(forced) })
	defer stop()
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case <-forced:
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not force")
	}
	if s1, s2 := <-got, <-got; s1 != syscall.SIGINT || s2 != syscall.SIGTERM {
		t.Fatalf("signals seen: %v %v", s1, s2)
	}
}

func TestCheckListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	err = CheckListen(addr)
	var inUse *AddrInUseError
	if !errors.As(err, &inUse) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "ss -ltnp") {
		t.Fatalf("held address: %v", err)
	}
	ln.Close()
	if err := CheckListen(addr); err != nil {
		t.Fatalf("free address: %v", err)
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4200": "http://127.0.0.1:4200",
		"0.0.0.0:4200":   "http://127.0.0.1:4200",
		":4200":          "http://127.0.0.1:4200",
		"[::]:4200":      "http://[::1]:4200",
		"[::1]:4200":     "http://[::1]:4200",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A detached daemon's stdout and stderr follow its log across rotation, so
// a panic trace lands in the current file, not in a rotated one.
func TestRedirectStdioFollowsRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OXIOS_TEST_REDIRECT="+path)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(cur) != "this line rotates the log\nstderr after rotation\nstdout after rotation\n" {
		t.Fatalf("current log:\n%s\nrotated log:\n%s", cur, old)
	}
	if strings.Contains(string(old), "after rotation") {
		t.Fatalf("standard streams still wrote to the rotated file:\n%s", old)
	}
}

// While something other than the daemon holds the lock on a file that names
// another process (a stale file being cleaned up, or a daemon that has not
// written its PID yet), that process is never reported, nor signalled.
func TestTransientLockHolderNeverNamesAnotherProcess(t *testing.T) {
	if _, known := lockHolder(0, 0); !known && !fileExists("/proc/locks") {
		t.Skip("the system does not list lock holders")
	}
	path := filepath.Join(t.TempDir(), "oxios.pid")
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { victim.Process.Kill(); victim.Wait() }()
	os.WriteFile(path, []byte(fmt.Sprintf("%d\n", victim.Process.Pid)), 0o600)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadStatus(path); err == nil && st.PID == victim.Process.Pid {
		t.Fatalf("ReadStatus named PID %d, which does not hold the lock", st.PID)
	}
	if _, err := Stop(context.Background(), path, time.Second); err == nil {
		t.Fatal("Stop succeeded against a PID that does not hold the lock")
	}
	// A signalled child would now be a zombie (we have not reaped it).
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", victim.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(stat); s[strings.LastIndexByte(s, ')')+2] != 'S' {
		t.Fatalf("the unrelated process was signalled: %s", s)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// A daemon killed a moment ago holds its lock until its last thread has
// exited, though its main thread is already a zombie; start waits for it
// rather than report it running (CI: "already running" right after a
// SIGKILL, the old daemon's threads still in an fsync).
func TestAKilledDaemonIsNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oxios.pid")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OXIOS_TEST_LINGER="+path, "GOGC=off", "GOMAXPROCS=4")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "held" {
		t.Fatalf("the lingering daemon did not take the PID file: %q", line)
	}
	for deadline := time.Now().Add(5 * time.Second); !exiting(cmd.Process.Pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the main thread did not exit")
		}
	}
	if st, _, _, _ := readOnce(path); st.State != Running {
		t.Fatalf("the lock was let go early (%s): the test shows nothing", st.State)
	}
	p, err := Acquire(path, "127.0.0.1:2")
	if err != nil {
		t.Fatalf("start right after the kill: %v", err)
	}
	p.Release()
}
