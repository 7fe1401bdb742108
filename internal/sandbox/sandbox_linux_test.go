//go:build linux

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const secret = "s3cr3t-token-value"

// box is a working directory and, beside it, a directory holding a secret
// that a confined program must not reach.
func box(t *testing.T) (dir, secretFile string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir()) // paths are granted resolved
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, "ws")
	other := filepath.Join(root, "secrets")
	os.MkdirAll(dir, 0o700)
	os.MkdirAll(other, 0o700)
	secretFile = filepath.Join(other, "admin.token")
	os.WriteFile(secretFile, []byte(secret), 0o600)
	return dir, secretFile
}

// python3 is the system's, where the sandbox lets it run.
const python3 = "/usr/bin/python3"

func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python3); err != nil {
		t.Skip(python3 + " is not installed")
	}
}

func needLandlock(t *testing.T) {
	t.Helper()
	if Probe().Landlock == 0 {
		if os.Getenv("OXIOS_REQUIRE_TOOLS") != "" {
			t.Fatalf("Landlock is required: %s", Probe().LandlockWhy)
		}
		t.Skip(Probe().LandlockWhy)
	}
}

// run starts name args under p in dir and returns its output and exit.
func run(t *testing.T, p Policy, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = p.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + p.Dir, "TMPDIR=" + p.Tmp, "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if _, err := Start(cmd, p); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	err := cmd.Wait()
	return out.String(), err
}

func policy(dir string) Policy {
	return Policy{Mode: Enforce, Dir: dir, Tmp: filepath.Join(dir, ".tmp"), Network: NetAny}
}

func TestFilesystemConfined(t *testing.T) {
	needLandlock(t)
	dir, secretFile := box(t)
	p := policy(dir)
	for _, tc := range []struct{ name, script string }{
		{"cat", "cat " + secretFile},
		{"cat via ..", "cat ../secrets/admin.token"},
		{"ls parent", "ls -la .."},
		{"tar", "tar -cf loot.tar -C" + filepath.Dir(secretFile) + " . && tar -xOf loot.tar"},
		{"cp -t", "echo x > a.txt && cp -t" + filepath.Dir(secretFile) + " a.txt && echo copied"},
		{"find -exec", "find " + filepath.Dir(secretFile) + " -exec cat {} ;"},
		{"parent environ", fmt.Sprintf("cat /proc/%d/environ", os.Getpid())},
		{"tmp", "ls /tmp && echo LISTED"},
		{"root home", "ls -a /root && echo LISTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := run(t, p, "/bin/sh", "-c", tc.script)
			if strings.Contains(out, secret) || strings.Contains(out, "copied") || strings.Contains(out, "LISTED") || tc.name == "ls parent" && strings.Contains(out, "secrets") {
				t.Fatalf("ESCAPE: %q printed %q", tc.script, out)
			}
			if tc.name == "parent environ" && strings.Contains(out, "PATH=") {
				t.Fatalf("ESCAPE: read the daemon's environment: %q", out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(secretFile), "a.txt")); err == nil {
		t.Error("ESCAPE: cp -t wrote outside the working directory")
	}
	// Its own directory and its temporary directory work.
	out, err := run(t, p, "/bin/sh", "-c", `echo hi > f && cat f && echo t > "$TMPDIR/x" && cat "$TMPDIR/x"`)
	if err != nil || out != "hi\nt\n" {
		t.Fatalf("own directory: %q %v", out, err)
	}
}

func TestProgramsWork(t *testing.T) {
	needLandlock(t)
	dir, _ := box(t)
	p := policy(dir)
	cases := map[string][]string{
		"sh":      {"/bin/sh", "-c", "echo ok | tr a-z A-Z; ls /usr/bin >/dev/null && echo OK2"},
		"python3": {python3, "-c", "import json, os, tempfile; tempfile.mkstemp(); print(json.dumps({'ok': os.getcwd() != ''}))"},
		"git":     {"/bin/sh", "-c", "git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l"},
		"node":    {"node", "-e", "console.log(require('os').cpus().length > 0)"},
	}
	for name, argv := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Skip(argv[0] + " is not installed")
			}
			path, _ := exec.LookPath(argv[0])
			if !p.Readable(filepath.Dir(path)) {
				if real, err := filepath.EvalSymlinks(path); err != nil || !p.Readable(filepath.Dir(real)) {
					t.Skip(path + " is outside the system directories")
				}
			}
			out, err := run(t, p, path, argv[1:]...)
			if err != nil {
				t.Fatalf("%s failed in the sandbox: %v\n%s", name, err, out)
			}
			if !strings.Contains(out, "OK") && !strings.Contains(out, "true") && !strings.Contains(out, "1") {
				t.Fatalf("%s: %q", name, out)
			}
		})
	}
}

func TestNetworkNone(t *testing.T) {
	needLandlock(t)
	needPython(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(secret))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dir, _ := box(t)
	script := fmt.Sprintf(`import socket
s = socket.create_connection(("127.0.0.1", %d), timeout=2)
print(s.recv(100).decode())`, port)
	for _, net := range []string{NetNone, NetLoopback} {
		t.Run(net, func(t *testing.T) {
			p := policy(dir)
			p.Network = net
			if _, err := Prepare(p); err != nil {
				if net == NetLoopback && errors.Is(err, ErrUnavailable) {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			out, err := run(t, p, python3, "-c", script)
			if strings.Contains(out, secret) || err == nil {
				t.Fatalf("ESCAPE: network %s reached the host's loopback listener: %q", net, out)
			}
		})
	}
	p := policy(dir)
	out, err := run(t, p, python3, "-c", script)
	if !strings.Contains(out, secret) {
		t.Fatalf("network any could not connect: %q %v", out, err)
	}
}

func TestLoopbackIsPrivate(t *testing.T) {
	needLandlock(t)
	needPython(t)
	dir, _ := box(t)
	p := policy(dir)
	p.Network = NetLoopback
	if _, err := Prepare(p); err != nil {
		t.Skip(err)
	}
	script := `import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept(); a.send(b"LOOP"); print(c.recv(4).decode())`
	out, err := run(t, p, python3, "-c", script)
	if err != nil || !strings.Contains(out, "LOOP") {
		t.Fatalf("loopback inside the sandbox: %q %v", out, err)
	}
}

func TestCannotSignalTheDaemon(t *testing.T) {
	needLandlock(t)
	if Probe().Landlock < 6 {
		t.Skip("signal scoping needs Landlock ABI 6")
	}
	dir, _ := box(t)
	out, err := run(t, policy(dir), "/bin/sh", "-c", fmt.Sprintf("kill -CONT %d && echo SENT", os.Getpid()))
	if strings.Contains(out, "SENT") || err == nil {
		t.Fatalf("ESCAPE: the sandboxed program signalled the daemon: %q", out)
	}
}

func TestLimits(t *testing.T) {
	needLandlock(t)
	needPython(t)
	if !Probe().Limits {
		t.Skip(Probe().LimitsWhy)
	}
	dir, _ := box(t)
	p := policy(dir)
	p.Limits = Limits{CPUSeconds: 1}
	_, err := run(t, p, "/bin/sh", "-c", "while :; do :; done")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGXCPU && ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("a CPU spin under a 1 s limit ended with %v", err)
	}
	p.Limits = Limits{MemoryMB: 128}
	out, err := run(t, p, python3, "-c", "x = []\nwhile True: x.append(bytearray(1<<20))")
	if err == nil || !strings.Contains(out, "MemoryError") {
		t.Fatalf("a memory hog under 128 MiB: %v %q", err, out)
	}
	p.Limits = Limits{FileSizeMB: 1}
	_, err = run(t, p, "/bin/sh", "-c", "head -c 2000000 /dev/zero > big")
	if err == nil {
		t.Fatal("a 2 MB file under a 1 MiB limit was written")
	}
	p.Limits = Limits{OpenFiles: 10}
	out, _ = run(t, p, "/bin/sh", "-c", "ulimit -n")
	if strings.TrimSpace(out) != "10" {
		t.Fatalf("open files limit: %q", out)
	}
}

func TestEnforceWithoutLandlock(t *testing.T) {
	old := probed
	t.Cleanup(func() { probed = old })
	Probe()
	probed.Landlock, probed.LandlockWhy = 0, "Landlock is not available on this kernel (test)"
	dir, _ := box(t)
	cmd := exec.Command("/bin/true")
	cmd.Dir = dir
	_, err := Start(cmd, policy(dir))
	var ue *UnavailableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "sandbox unavailable: filesystem: Landlock is not available") {
		t.Fatalf("enforce without Landlock: %v", err)
	}
	if cmd.Process != nil {
		t.Fatal("a program started although its sandbox could not be applied")
	}
	p := policy(dir)
	p.Mode = BestEffort
	eff, err := Start(cmd, p)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if eff.Landlock != 0 || len(eff.Unenforced) == 0 || !strings.Contains(eff.Unenforced[0], "Landlock") {
		t.Fatalf("best effort without Landlock records %+v", eff)
	}
}

// /etc is readable but for its secrets, which uid 0 would own.
func TestEtcSecrets(t *testing.T) {
	needLandlock(t)
	dir, _ := box(t)
	out, _ := run(t, policy(dir), "/bin/sh", "-c", "cat /etc/passwd >/dev/null && echo PASSWD; cat /etc/shadow /etc/gshadow; ls /etc/ssl/private; cat /etc/ssh/ssh_host_*_key")
	if !strings.Contains(out, "PASSWD") {
		t.Fatalf("/etc/passwd unreadable: %q", out)
	}
	if strings.Contains(out, "root:") || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("ESCAPE: read a secret of /etc: %q", out)
	}
}

// An agent that replaced its temporary directory with a symlink out gets
// a real directory again; one whose working directory is now reached
// through a symlink does not start.
func TestSymlinkedOwnPaths(t *testing.T) {
	needLandlock(t)
	dir, secretFile := box(t)
	p := policy(dir)
	os.Symlink(filepath.Dir(secretFile), p.Tmp)
	out, _ := run(t, p, "/bin/sh", "-c", `cat "$TMPDIR/admin.token"; ls -la "$TMPDIR"`)
	if strings.Contains(out, secret) || strings.Contains(out, "admin.token\n") {
		t.Fatalf("ESCAPE: through a symlinked TMPDIR: %q", out)
	}
	if fi, err := os.Lstat(p.Tmp); err != nil || !fi.IsDir() {
		t.Fatalf("TMPDIR is not a real directory again: %v %v", fi, err)
	}
	link := filepath.Join(filepath.Dir(dir), "link")
	os.Symlink(filepath.Dir(secretFile), link)
	q := policy(link)
	q.Tmp = ""
	cmd := exec.Command("/bin/true")
	if _, err := Start(cmd, q); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("a working directory reached through a symlink: %v", err)
	}
	q.Dir, q.Read = dir, []string{link}
	if _, err := Start(exec.Command("/bin/true"), q); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("a read path reached through a symlink: %v", err)
	}
}

// No program is ever confined on the daemon's main thread: it is the
// thread group's leader, whose domain decides who may read
// /proc/DAEMON/environ, and the runtime never ends it.
func TestOnThreadNeverOnTheMainThread(t *testing.T) {
	var wg sync.WaitGroup
	var onMain atomic.Int64
	for range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := onThread(func() error {
				if unix.Gettid() == unix.Getpid() {
					onMain.Add(1)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := onMain.Load(); n > 0 {
		t.Fatalf("%d of 400 ran on the main thread", n)
	}
}
