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
	cmd.Env = []string{"OXIOS_AGENT_ID=a1", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := make(chan struct{})
	go func() { cmd.Wait(); close(reaped) }() // reaps the leader once it ends, as init would for an orphan
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(Leftovers(pid, start, "")) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(Leftovers(pid, start, "")); n != 3 {
		t.Fatalf("found %d processes of the group, want 3 (sh and two sleeps)", n)
	}
	if n := len(Leftovers(pid, start+1, "OXIOS_AGENT_ID=a1")); n != 0 {
		t.Fatalf("a wrong start time matched %d processes", n)
	}
	if tagged := ByEnv("OXIOS_AGENT_ID")["a1"]; len(tagged) != 3 {
		t.Fatalf("ByEnv found %v, want the 3 processes", tagged)
	}
	// With the leader gone, only members that carry the tag are ours.
	syscall.Kill(pid, syscall.SIGKILL)
	<-reaped
	if n := len(Leftovers(pid, start, "")); n != 0 {
		t.Fatalf("without the leader or a tag, %d processes were taken for ours", n)
	}
	left := Leftovers(pid, start, "OXIOS_AGENT_ID=a1")
	if len(left) != 2 {
		t.Fatalf("found %v, want the two sleeps by their tag", left)
	}
	if n := Terminate(left, syscall.SIGTERM, 2*time.Second); n != 2 {
		t.Fatalf("terminated %d, want 2", n)
	}
	if left := ByEnv("OXIOS_AGENT_ID")["a1"]; len(left) != 0 {
		t.Fatalf("still alive: %v", left)
	}
}
