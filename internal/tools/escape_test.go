package tools

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A workspace whose name holds glob metacharacters widens the allow pattern.
func TestWorkspaceNameIsNotAGlob(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "proj*")
	other := filepath.Join(root, "projSECRET")
	os.MkdirAll(ws, 0o700)
	os.MkdirAll(other, 0o700)
	os.WriteFile(filepath.Join(other, "key"), []byte("secret"), 0o600)
	g, err := NewGate(ws, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Gate: g}
	b, _ := json.Marshal(map[string]string{"path": other + "/key"})
	out, err := Call(context.Background(), e, "read_file", b)
	if err == nil {
		t.Errorf("ESCAPE: read %s from workspace %s: %q", other+"/key", ws, out)
	}
	// and a workspace with [..] denies its own files
	ws2 := filepath.Join(root, "w[1]")
	os.MkdirAll(ws2, 0o700)
	g2, _ := NewGate(ws2, Policy{})
	if _, err := g2.Path("read_file", "a.txt"); err != nil {
		t.Errorf("own file denied: %v", err)
	}
	if _, err := g2.Path("read_file", filepath.Join(root, "w1", "x")); err == nil {
		t.Errorf("ESCAPE: %s/w1/x allowed", root)
	}
}

// grep (and read_file) on a FIFO in the workspace would block for ever,
// ignoring ctx, and the agent could not be killed: the FIFO is skipped, so
// grep returns by itself.
func TestFIFOCannotHangATool(t *testing.T) {
	e, ws := env(t, Policy{})
	if err := syscall.Mkfifo(filepath.Join(ws, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		Call(context.Background(), e, "grep", json.RawMessage(`{"pattern":"x"}`))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("grep still blocked on a FIFO after 3s")
		// unblock it
		f, _ := os.OpenFile(filepath.Join(ws, "pipe"), os.O_WRONLY, 0)
		f.Close()
	}
}

// glob follows a symlink loop inside the workspace and ignores ctx.
func TestGlobSymlinkLoopEnds(t *testing.T) {
	e, ws := env(t, Policy{})
	os.MkdirAll(filepath.Join(ws, "a"), 0o700)
	os.Symlink("..", filepath.Join(ws, "a", "up"))
	done := make(chan string, 1)
	go func() {
		out, err := Call(context.Background(), e, "glob", json.RawMessage(`{"pattern":"**/nothing"}`))
		if err != nil {
			out += " " + err.Error()
		}
		done <- out
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("glob **/nothing did not return in 5s with a ws/a/up -> .. symlink")
	}
}

// An allowed program cannot be pointed at a path the agent may not touch;
// shell mode needs no "sh" in the allowlist, only exec.shell.
func TestExecArgumentsAreChecked(t *testing.T) {
	yes := true
	e, _ := env(t, Policy{Exec: ExecPolicy{Allow: []string{"cat"}, Shell: &yes}})
	for _, args := range [][]string{{"/etc/passwd"}, {"../../x"}, {"--file=/proc/1/environ"}} {
		if _, err := call(t, e, "exec", map[string]any{"command": "cat", "args": args}); !denied(err, "paths") {
			t.Errorf("cat %v: %v", args, err)
		}
	}
	if out, err := call(t, e, "exec", map[string]any{"command": "cat", "args": []string{"-n", "./missing"}}); err != nil || !strings.HasPrefix(out, "exit code 1") {
		t.Errorf("cat inside the workspace: %q %v", out, err)
	}
	if out, err := call(t, e, "exec", map[string]any{"command": "echo shell", "shell": true}); err != nil || !strings.Contains(out, "shell") {
		t.Errorf("shell mode: %q %v", out, err)
	}
}

// The argument filter's two flaws: a short option with its path joined
// was not checked, and a word with a '/' inside a longer argument (or a
// bare "..") was judged relative to the workspace. The sandbox is the
// boundary; this is the cheap first filter.
func TestExecArgsFilter(t *testing.T) {
	ws := t.TempDir()
	g, err := NewGate(ws, Policy{Exec: ExecPolicy{Allow: []string{"git"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-C/etc", "x"},
		{"-t/tmp", "a.txt"},
		{"-c", "alias.x=!cat /etc/passwd", "x"},
		{"-c", "alias.x=!id; cat ../OTHER/secrets/admin.token", "x"},
		{"-la", ".."},
		{"--git-dir=../other/.git", "log"},
		{"core.fsmonitor=sh -c 'cat /root/x'"},
	} {
		if err := g.Args(args); err == nil {
			t.Errorf("ESCAPE: %q passed the argument filter", args)
		} else if strings.Contains(err.Error(), "resolves to") {
			t.Errorf("the denial discloses where a path resolves: %v", err)
		}
	}
	for _, args := range [][]string{
		{"status"}, {"log", "--format=%H %s", "-n", "3"}, {"-C", "sub", "status"}, {"diff", "a/b.txt", "./c"},
		{"clone", "https://example.com/x.git"}, {"status", "2>/dev/null"},
	} {
		if err := g.Args(args); err != nil {
			t.Errorf("%q denied: %v", args, err)
		}
	}
	// /proc/self resolves to the daemon's PID: a denial must not say it.
	_, err = g.Path("read_file", "/proc/self/environ")
	if err == nil || strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("/proc/self/environ: %v", err)
	}
}

// The file tools run in the daemon: a directory of the workspace swapped
// for a symlink out between the check and the open (a program of the
// agent racing with renameat2) must not be followed.
func TestFileToolsDoNotFollowASwappedLink(t *testing.T) {
	root := t.TempDir()
	ws, outside := filepath.Join(root, "ws"), filepath.Join(root, "outside")
	os.MkdirAll(filepath.Join(ws, "real"), 0o700)
	os.MkdirAll(outside, 0o700)
	os.WriteFile(filepath.Join(ws, "real", "f"), []byte("mine"), 0o600)
	os.WriteFile(filepath.Join(outside, "f"), []byte("secret"), 0o600)
	g, _ := NewGate(ws, Policy{})
	read, err := g.Path("read_file", "real/f")
	if err != nil {
		t.Fatal(err)
	}
	write, _ := g.Path("write_file", "real/new/x")
	// The swap, after the check.
	os.Rename(filepath.Join(ws, "real"), filepath.Join(ws, "real.old"))
	os.Symlink(outside, filepath.Join(ws, "real"))
	if f, err := openRegular(read); err == nil {
		b, _ := io.ReadAll(f)
		t.Fatalf("ESCAPE: read %q through a swapped link", b)
	}
	if err := mkdirAllNoFollow(filepath.Dir(write), 0o755); err == nil {
		t.Fatal("ESCAPE: made a directory through a swapped link")
	}
	if err := writeNoFollow(filepath.Join(filepath.Dir(read), "g"), []byte("x"), 0o644); err == nil {
		t.Fatal("ESCAPE: wrote through a swapped link")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("ESCAPE: the outside directory holds %v", entries)
	}
}

// One huge result cannot take the daemon's memory: output past the cap is
// counted, not kept, and the cap has a hard ceiling (issue 15.4).
func TestExecOutputIsBounded(t *testing.T) {
	if err := ValidatePolicy(Policy{Exec: ExecPolicy{MaxOutputKB: 64 << 10}}, "policy."); err == nil || !strings.Contains(err.Error(), "policy.exec.max_output_kb: must be from 1 to 1024") {
		t.Fatalf("max_output_kb 65536: %v", err)
	}
	e, _ := env(t, Policy{Exec: ExecPolicy{Allow: []string{"yes"}, MaxOutputKB: MaxOutputKB, Timeout: "2s"}})
	out, err := Call(context.Background(), e, "exec", json.RawMessage(`{"command": "yes", "args": ["0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqr"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > MaxOutputKB<<10+200 || !strings.Contains(out, "[output truncated: ") {
		t.Fatalf("a 50 MB result: %d bytes, ending %q", len(out), out[max(0, len(out)-80):])
	}
}
