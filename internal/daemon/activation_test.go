package daemon

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// inheritHelper is the child of TestInherited: it takes the socket handed
// to it and answers one connection with what it found.
func inheritHelper() {
	h, err := Inherited()
	var msg string
	switch {
	case err != nil:
		msg = "error: " + err.Error()
	case h == nil:
		msg = "none"
	default:
		again, _ := Inherited()
		msg = fmt.Sprintf("addr=%s same=%v env=%q/%q", h.Addr(), again == h, os.Getenv(ListenFDEnv), os.Getenv("LISTEN_FDS"))
		if c, err := h.Listener.Accept(); err == nil {
			fmt.Fprintln(c, "served")
			c.Close()
		}
	}
	fmt.Println(msg)
}

// child runs inheritHelper with ln on descriptor 3 and env (with
// systemd, under LISTEN_PID and LISTEN_FDS); with serve, it expects the
// child to serve one connection on ln.
func child(t *testing.T, ln *net.TCPListener, serve, systemd bool, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInherited$")
	if systemd {
		// systemd's LISTEN_PID names the process itself: sh sets it to its
		// own PID, which exec keeps.
		cmd = exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -test.run='^TestInherited$'`, os.Args[0])
	}
	cmd.Env = append(os.Environ(), "OXIOS_INHERIT_HELPER=1")
	cmd.Env = append(cmd.Env, env...)
	if ln != nil {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if serve {
		go func() {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				bufio.NewReader(c).ReadString('\n')
				c.Close()
			}
		}()
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line)
}

// A socket handed over on descriptor 3 is served on, once taken; the
// variables that handed it over are gone from the environment; a socket
// meant for another process (LISTEN_PID) or a descriptor that is no
// socket is not taken.
func TestInherited(t *testing.T) {
	if os.Getenv("OXIOS_INHERIT_HELPER") == "1" {
		inheritHelper()
		os.Exit(0)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := fmt.Sprintf("addr=%s same=true env=\"\"/\"\"", ln.Addr())
	if got := child(t, ln, true, false, ListenFDEnv+"=3"); got != want {
		t.Errorf("%s: got %q, want %q", ListenFDEnv, got, want)
	}
	if got := child(t, ln, true, true); got != want {
		t.Errorf("systemd socket activation: got %q, want %q", got, want)
	}
	if got := child(t, ln, false, false, ListenFDEnv+"=4"); !strings.Contains(got, "must be 3") {
		t.Errorf("%s=4: %q", ListenFDEnv, got)
	}
	if got := child(t, ln, false, false, "LISTEN_FDS=1", "LISTEN_PID=1"); got != "none" {
		t.Errorf("a socket for another process was taken: %q", got)
	}
	if got := child(t, nil, false, false); got != "none" {
		t.Errorf("nothing handed over: %q", got)
	}
	// Descriptor 3 is a file, not a socket.
	f, err := os.CreateTemp(t.TempDir(), "notasocket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInherited$")
	cmd.Env = append(os.Environ(), "OXIOS_INHERIT_HELPER=1", ListenFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{f}
	out, _ := cmd.Output()
	if got := string(out); !strings.Contains(got, "is not a listening socket") {
		t.Errorf("a file on descriptor 3: %q", got)
	}
}
