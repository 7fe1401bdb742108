package proc

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A group left behind (as after a SIGKILL of the daemon) is found by its
// leader's PID and start time, and terminated whole; a wrong start time
// finds nothing.
func TestTerminateLeftovers(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", `sleep 100 & sleep 100; wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := make(chan struct{})
	go func() { cmd.Wait(); close(reaped) }() // reaps the leader once it ends, as init would for an orphan
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); <-reaped })
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(Leftovers(pid, start)) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(Leftovers(pid, start)); n != 3 {
		t.Fatalf("found %d processes of the group, want 3 (sh and two sleeps)", n)
	}
	if n := Terminate(pid, start+1, syscall.SIGTERM, time.Second); n != 0 {
		t.Fatalf("a wrong start time matched %d processes", n)
	}
	if len(Leftovers(pid, start)) != 3 {
		t.Fatal("a mismatched Terminate touched the group")
	}
	if n := Terminate(pid, start, syscall.SIGTERM, 2*time.Second); n != 3 {
		t.Fatalf("terminated %d, want 3", n)
	}
	if left := Leftovers(pid, start); len(left) != 0 {
		t.Fatalf("still alive: %v", left)
	}
}
