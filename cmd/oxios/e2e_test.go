package main

// End-to-end tests: they build the oxios binary and drive it as a user
// would, each with its own temporary OXIOS_HOME and a free port.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/oxios"
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// No test that needs the binary runs (newEnv skips them), so it
		// is not built.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "oxios-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "oxios")
	// As a plain go build in the checkout does, whatever GOFLAGS says.
	args := []string{"build", "-buildvcs=auto", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build oxios:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one isolated oxios installation: a home and a port.
type env struct {
	t      testing.TB
	home   string
	listen string
	// ln is the test's listening socket on listen, held for the whole
	// test and handed to every oxios it runs (OXIOS_LISTEN_FD): no port is
	// chosen by listening, closing and listening again, which another
	// program may take in between. Unset handOver to have oxios bind
	// listen itself (and find it taken).
	ln       *net.TCPListener
	handOver bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	t.Parallel()
	return anotherEnv(t)
}

// anotherEnv is one more installation for a test that already has one
// (the nodes of a cluster).
func anotherEnv(t testing.TB) *env {
	t.Helper()
	ln := heldListener(t)
	e := &env{t: t, home: filepath.Join(t.TempDir(), "home"), listen: ln.Addr().String(), ln: ln, handOver: true}
	t.Cleanup(func() {
		// Never leave a daemon behind, whatever the test did.
		if pid := e.pidIfRunning(); pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return e
}

// socketHolders lists the processes other than this one that hold ln's
// socket open.
func socketHolders(t testing.TB, ln *net.TCPListener) []int {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("socket:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[int]bool{}
	var out []int
	for _, p := range procs {
		pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
		if pid == os.Getpid() || seen[pid] {
			continue
		}
		if l, err := os.Readlink(p); err == nil && l == want {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	return out
}

// heldListener is a listening socket on a port of the kernel's choosing,
// closed when the test ends.
func heldListener(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startsDaemon reports whether the command args start a daemon: start,
// restart, or oxios with no command.
func startsDaemon(args []string) bool {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--listen" || a == "--config" || a == "-o" || a == "--output":
			i++ // and its value
		case strings.HasPrefix(a, "-"):
		default:
			return a == "start" || a == "restart"
		}
	}
	return true
}

// handOver sets cmd up to receive ln as descriptor 3 (OXIOS_LISTEN_FD),
// the way oxios takes a socket handed over. Only the commands that start
// a daemon take it; the others leave it alone. The returned function
// closes the test's copy of the descriptor once cmd has started.
func handOver(t testing.TB, cmd *exec.Cmd, ln *net.TCPListener) func() {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(cmd.Env, daemon.ListenFDEnv+"=3")
	return func() { f.Close() }
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the binary with the env's home; OXIOS_* from the test process's
// environment do not leak in.
func (e *env) run(extraEnv []string, args ...string) result {
	e.t.Helper()
	return e.runFrom("", extraEnv, args...)
}

// runFrom runs the CLI from dir ("": the test's own directory).
func (e *env) runFrom(dir string, extraEnv []string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home, "NO_COLOR=1")
	cmd.Env = append(cmd.Env, extraEnv...)
	if e.handOver && startsDaemon(args) {
		defer handOver(e.t, cmd, e.ln)()
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run oxios %v: %v", args, err)
	}
	return r
}

func (e *env) oxios(args ...string) result { e.t.Helper(); return e.run(nil, args...) }

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OXIOS_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return out
}

func (e *env) pidPath() string { return filepath.Join(e.home, "oxios.pid") }

// pidIfRunning returns the PID of a daemon holding the PID file, or 0.
func (e *env) pidIfRunning() int {
	f, err := os.Open(e.pidPath())
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		return 0
	}
	b := make([]byte, 64)
	n, _ := f.Read(b)
	pid, _ := strconv.Atoi(strings.SplitN(string(b[:n]), "\n", 2)[0])
	return pid
}

func (e *env) start() int {
	e.t.Helper()
	r := e.oxios("start", "--listen", e.listen)
	if r.code != 0 {
		e.t.Fatalf("start failed: %s", r)
	}
	m := regexp.MustCompile(`started \(PID (\d+)\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		e.t.Fatalf("start did not print the PID: %s", r)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func (e *env) token() string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "secrets", "admin.token"))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (e *env) get(path, token string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.listen+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// waitGone polls until the process no longer exists.
func waitGone(t testing.TB, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if isZombie(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still exists after %s", pid, within)
}

// isZombie reports whether pid has exited but not been reaped (its parent,
// init, reaps it in its own time).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	pid := e.start()

	r := e.oxios("status")
	if r.code != 0 || !strings.Contains(r.stdout, "oxios is running") || !strings.Contains(r.stdout, strconv.Itoa(pid)) ||
		!strings.Contains(r.stdout, e.listen) || !strings.Contains(r.stdout, "answering") {
		t.Fatalf("status while running: %s", r)
	}
	r = e.oxios("status", "-o", "json")
	var st statusReport
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.State != "running" || st.PID != pid || !st.APIAnswers || st.Version == "" {
		t.Fatalf("status -o json: %+v %v\n%s", st, err, r)
	}

	r = e.oxios("start", "--listen", e.listen)
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("already running (PID %d)", pid)) {
		t.Fatalf("second start: %s", r)
	}
	if r = e.oxios(); r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Fatalf("bare oxios while running: %s", r)
	}

	// API: no token 401, wrong token 401, admin token 200.
	if code, body := e.get("/api/v1/system", ""); code != 401 || !strings.Contains(body, `"unauthorized"`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, _ := e.get("/api/v1/system", "oxs_wrong"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, body := e.get("/api/v1/system", e.token())
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"pid": %d`, pid)) || !strings.Contains(body, `"home": "`+e.home) {
		t.Fatalf("with token: %d %s", code, body)
	}
	if code, body := e.get("/api/v1/nothing", e.token()); code != 404 || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("unknown route: %d %s", code, body)
	}
	if code, body := e.get("/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}

	if r = e.oxios("logs", "-n", "20"); r.code != 0 || !strings.Contains(r.stdout, "msg=ready") {
		t.Fatalf("logs: %s", r)
	}

	r = e.oxios("stop")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("oxios stopped (PID %d)", pid)) {
		t.Fatalf("stop: %s", r)
	}
	waitGone(t, pid, 5*time.Second)
	if _, err := os.Stat(e.pidPath()); !os.IsNotExist(err) {
		t.Fatalf("PID file left after stop: %v", err)
	}
	if r = e.oxios("status"); r.code != 3 || !strings.Contains(r.stdout, "stopped") {
		t.Fatalf("status after stop: %s", r)
	}
	if r = e.oxios("stop"); r.code != 0 || !strings.Contains(r.stdout, "not running") {
		t.Fatalf("stop when stopped: %s", r)
	}
	logs := e.oxios("logs", "-n", "5")
	if !strings.Contains(logs.stdout, "msg=stopped") {
		t.Fatalf("the daemon did not log a graceful stop: %s", logs)
	}
}

func TestFirstStartCreatesHome(t *testing.T) {
	e := newEnv(t)
	e.start()
	defer e.oxios("stop")
	for path, mode := range map[string]os.FileMode{
		e.home:                           0o700,
		filepath.Join(e.home, "secrets"): 0o700,
		filepath.Join(e.home, "secrets", "admin.token"): 0o600,
		filepath.Join(e.home, "config.toml"):            0o600,
		filepath.Join(e.home, "logs", "oxios.log"):      0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %04o", path, err, mode)
		}
	}
	b, _ := os.ReadFile(filepath.Join(e.home, "config.toml"))
	if !strings.Contains(string(b), "# Address the HTTP API") || !strings.Contains(string(b), `stop_timeout = "10s"`) {
		t.Fatalf("config.toml is not the commented default:\n%s", b)
	}
	if r := e.oxios("config", "validate"); r.code != 0 || !strings.Contains(r.stdout, "is valid") {
		t.Fatalf("config validate: %s", r)
	}
	if r := e.oxios("config", "path"); strings.TrimSpace(r.stdout) != filepath.Join(e.home, "config.toml") {
		t.Fatalf("config path: %s", r)
	}
	logs, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
	if strings.Contains(string(logs), e.token()) {
		t.Fatal("the admin token was written to the log")
	}
}

func TestBareOxiosStarts(t *testing.T) {
	e := newEnv(t)
	r := e.run(nil, "--listen", e.listen)
	if r.code != 0 || !strings.Contains(r.stdout, "oxios started") || !strings.Contains(r.stdout, "dashboard: http://"+e.listen+"/") {
		t.Fatalf("bare oxios: %s", r)
	}
	if r = e.oxios("stop"); r.code != 0 {
		t.Fatalf("stop: %s", r)
	}
}

func TestRestart(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	r := e.oxios("restart", "--listen", e.listen)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("oxios stopped (PID %d)", pid)) || !strings.Contains(r.stdout, "oxios started") {
		t.Fatalf("restart: %s", r)
	}
	waitGone(t, pid, 5*time.Second)
	if np := e.pidIfRunning(); np == 0 || np == pid {
		t.Fatalf("after restart PID %d (was %d)", np, pid)
	}
	e.oxios("stop")
}

func TestStalePIDFile(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(e.home, 0o700)
	// A PID file naming a live process (this test) that holds no lock: the
	// recycled-PID case. It must read as stale, never as running.
	os.WriteFile(e.pidPath(), []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), e.listen)), 0o600)
	r := e.oxios("status")
	if r.code != 1 || !strings.Contains(r.stdout, "not running") {
		t.Fatalf("status with a stale PID file: %s", r)
	}
	pid := e.start()
	if pid == os.Getpid() {
		t.Fatal("impossible PID")
	}
	if r := e.oxios("status"); r.code != 0 {
		t.Fatalf("status after start over stale file: %s", r)
	}
	e.oxios("stop")
}

func TestPortHeldByAnotherProgram(t *testing.T) {
	e := newEnv(t)
	e.handOver = false // the test's socket is the other program's
	r := e.oxios("start", "--listen", e.listen)
	if r.code != 1 || !strings.Contains(r.stderr, e.listen+" is already in use") || !strings.Contains(r.stderr, "ss -ltnp") {
		t.Fatalf("start on a held port: %s", r)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("want one line, got: %q", r.stderr)
	}
	if pid := e.pidIfRunning(); pid != 0 {
		t.Fatalf("a daemon (PID %d) was left behind", pid)
	}
	if r := e.oxios("status"); r.code != 3 {
		t.Fatalf("status: %s", r)
	}
}

// A daemon that starts but fails during boot: start shows its log and exits
// non-zero, and the daemon is gone.
func TestDaemonThatFailsToBoot(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(filepath.Join(e.home, "secrets"), 0o700)
	// The admin token path is a directory: the daemon cannot read or create it.
	os.MkdirAll(filepath.Join(e.home, "secrets", "admin.token"), 0o700)
	r := e.oxios("start", "--listen", e.listen)
	if r.code != 1 || !strings.Contains(r.stderr, "exited before it was ready") ||
		!strings.Contains(r.stderr, "--- last") || !strings.Contains(r.stderr, "admin token") {
		t.Fatalf("start of a failing daemon: %s", r)
	}
	e.assertNoDaemonFrom(r)
}

// A daemon that is alive but not ready in time is terminated by start.
func TestReadyTimeoutStopsTheChild(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(cfg, []byte("[daemon]\nready_timeout = \"1ms\"\n"), 0o600)
	r := e.oxios("start", "--config", cfg, "--listen", e.listen)
	if r.code != 1 || !strings.Contains(r.stderr, "was not ready within 1ms") {
		t.Fatalf("start with a tiny ready timeout: %s", r)
	}
	e.assertNoDaemonFrom(r)
	if pids := socketHolders(t, e.ln); len(pids) > 0 {
		t.Fatalf("the socket handed over is still held by PIDs %v", pids)
	}
}

// assertNoDaemonFrom checks that the daemon a failed start names (by PID)
// is gone and that no daemon holds the PID file.
func (e *env) assertNoDaemonFrom(r result) {
	e.t.Helper()
	waitGone(e.t, pidFrom(e.t, r.stderr), 5*time.Second)
	if p := e.pidIfRunning(); p != 0 {
		e.t.Fatalf("daemon %d left running", p)
	}
}

func pidFrom(t testing.TB, s string) int {
	t.Helper()
	m := regexp.MustCompile(`PID (\d+)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no PID in %q", s)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	badCfg := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(badCfg, []byte("[daemon]\nstop_timeout = \"10s\"\nstop_timout = \"5s\"\n"), 0o600)
	badVal := filepath.Join(t.TempDir(), "badval.toml")
	os.WriteFile(badVal, []byte("[log]\nlevel = \"verbose\"\n"), 0o600)
	badStore := filepath.Join(t.TempDir(), "badstore.toml")
	os.WriteFile(badStore, []byte("[store]\nsync = \"sometimes\"\n"), 0o600)
	badPeer := filepath.Join(t.TempDir(), "badpeer.toml")
	os.WriteFile(badPeer, []byte("[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"node2\"]\n"), 0o600)
	noKey := filepath.Join(t.TempDir(), "nokey.toml")
	os.WriteFile(noKey, []byte("[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"127.0.0.1:7102\"]\n"), 0o600)
	tooMany := filepath.Join(t.TempDir(), "toomany.toml")
	os.WriteFile(tooMany, []byte("[backbone]\nreplicas = 3\n[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"127.0.0.1:7102\"]\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--config", badCfg, "--listen", e.listen}, "bad.toml:3: daemon.stop_timout: unknown key"},
		{[]string{"start", "--config", badVal, "--listen", e.listen}, "badval.toml:2: log.level: must be one of debug, info, warn, error"},
		{[]string{"config", "validate", "--config", badCfg}, "daemon.stop_timout: unknown key"},
		{[]string{"start", "--listen", "localhost"}, "--listen: must be \"host:port\""},
		{[]string{"start", "--listen", "127.0.0.1:70000"}, "--listen: port must be a number from 1 to 65535"},
		{[]string{"start", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"status", "-o", "yaml"}, "--output: must be table or json"},
		{[]string{"start", "--config", badStore, "--listen", e.listen}, "store.sync: must be \"always\" or a duration"},
		{[]string{"start", "--config", badPeer, "--listen", e.listen}, `badpeer.toml:3: cluster.peers: must be "host:port"`},
		{[]string{"start", "--config", noKey, "--listen", e.listen}, "cluster.listen: this node has no " + filepath.Join(e.home, "secrets", "cluster.key") + ": run 'oxios cluster init'"},
		{[]string{"start", "--config", tooMany, "--listen", e.listen}, "backbone.replicas: must be at most 2, the cluster's nodes"},
		{[]string{"logs", "-n", "-3"}, "-n: must be 0 or more"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"config", "bogus"}, `unknown command "bogus" for "oxios config"`},
		{[]string{"start", "--config", filepath.Join(t.TempDir(), "missing.toml")}, "does not exist"},
	} {
		r := e.oxios(c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("oxios %v: want exit 2 with %q, got %s", c.args, c.want, r)
			continue
		}
		if lines := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; lines != 1 {
			t.Errorf("oxios %v: %d lines of error, want 1: %q", c.args, lines, r.stderr)
		}
		if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "Usage:") {
			t.Errorf("oxios %v printed a trace or usage dump: %q", c.args, r.stderr)
		}
	}
	if pid := e.pidIfRunning(); pid != 0 {
		t.Fatalf("bad input left a daemon (PID %d)", pid)
	}
}

func TestSIGTERMIsGraceful(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		pid := e.start()
		syscall.Kill(pid, sig)
		waitGone(t, pid, 10*time.Second)
		if _, err := os.Stat(e.pidPath()); !os.IsNotExist(err) {
			t.Fatalf("%v: PID file left: %v", sig, err)
		}
		logs := e.oxios("logs", "-n", "10").stdout
		if !strings.Contains(logs, "signal="+strings.ToLower(sig.String()[:1])+sig.String()[1:]) && !strings.Contains(logs, "received signal") {
			t.Fatalf("%v: log does not show the signal:\n%s", sig, logs)
		}
		if !strings.HasSuffix(strings.TrimSpace(logs), "msg=stopped") {
			t.Fatalf("%v: log does not end with a graceful stop:\n%s", sig, logs)
		}
	}
}

// The foreground daemon exits 0 on SIGTERM, notifies systemd, and removes
// its PID file.
func TestForegroundNotifyAndExitCode(t *testing.T) {
	e := newEnv(t)
	// Unix socket paths are limited to 108 bytes: keep this one short.
	sockDir, err := os.MkdirTemp("", "oxn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	cmd := exec.Command(binary, "start", "--foreground", "--listen", e.listen)
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home, "NOTIFY_SOCKET="+sock)
	defer handOver(t, cmd, e.ln)()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	read := func() string {
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v\n%s", err, stderr.String())
		}
		return string(buf[:n])
	}
	if m := read(); m != "READY=1" {
		t.Fatalf("first notify %q, want READY=1", m)
	}
	if code, _ := e.get("/readyz", ""); code != 200 {
		t.Fatalf("READY=1 sent before /readyz answers 200 (got %d)", code)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if m := read(); m != "STOPPING=1" {
		t.Fatalf("second notify %q, want STOPPING=1", m)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("foreground daemon exit: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(e.pidPath()); !os.IsNotExist(err) {
		t.Fatalf("PID file left: %v", err)
	}
	if !strings.Contains(stderr.String(), "msg=ready") {
		t.Fatalf("a foreground daemon logs to stderr too; got:\n%s", stderr.String())
	}
}

func TestSIGKILLThenStart(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	r := e.oxios("status")
	if r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("PID %d", pid)) {
		t.Fatalf("status after SIGKILL: %s", r)
	}
	r = e.oxios("start", "--listen", e.listen)
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("removed stale PID file of a daemon that died (PID %d)", pid)) {
		t.Fatalf("start after SIGKILL: %s", r)
	}
	e.oxios("stop")
}

func TestLogsFollow(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	cmd := exec.Command(binary, "logs", "-f", "-n", "1")
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	// The last line is printed once logs -f has found the end of the file;
	// from then on it follows.
	select {
	case <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f printed nothing")
	}
	if r := e.oxios("stop"); r.code != 0 {
		t.Fatalf("stop: %s", r)
	}
	waitGone(t, pid, 5*time.Second)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("logs -f ended early")
			}
			if strings.Contains(l, "msg=stopped") {
				cmd.Process.Signal(os.Interrupt)
				if err := cmd.Wait(); err != nil {
					t.Fatalf("logs -f did not exit 0 on interrupt: %v", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("logs -f did not show the shutdown")
		}
	}
}

// restart without --listen comes back on the address the daemon had.
func TestRestartKeepsListen(t *testing.T) {
	e := newEnv(t)
	e.start()
	r := e.oxios("restart")
	if r.code != 0 || !strings.Contains(r.stdout, "dashboard: http://"+e.listen+"/") {
		t.Fatalf("restart: %s", r)
	}
	e.oxios("stop")
}

// The daemon does not keep the caller's inherited pipes open: a shell
// waiting for the end of start's output is not held up by the daemon.
func TestStartDoesNotHoldCallersPipes(t *testing.T) {
	e := newEnv(t)
	// (Descriptor 3 is the socket handed over; the pipe is on 4.)
	cmd := exec.Command("bash", "-c", `exec 4>&1; "$0" start --listen "$1" >/dev/null 2>&1`, binary, e.listen)
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home)
	defer handOver(t, cmd, e.ln)()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(out) // ends when every holder of the pipe has closed it
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the daemon holds the caller's pipe open")
	}
	cmd.Wait()
	if pid := e.pidIfRunning(); pid == 0 {
		t.Fatal("the daemon did not start")
	}
	e.oxios("stop")
}

func TestVersionAndHelp(t *testing.T) {
	e := newEnv(t)
	r := e.oxios("version", "-o", "json")
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["version"] == "" || v["go_version"] == "" {
		t.Fatalf("version -o json: %s", r)
	}
	// Built in a git checkout, the binary names its commit (issue 15.8:
	// "commit unknown").
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if want := strings.TrimSpace(string(head))[:12]; !strings.HasPrefix(v["commit"], want) {
			t.Errorf("version says commit %q; the checkout is at %s", v["commit"], want)
		}
	}
	for _, c := range [][]string{{}, {"start"}, {"stop"}, {"restart"}, {"status"}, {"logs"}, {"version"}, {"config"}, {"config", "path"}, {"config", "show"}, {"config", "validate"},
		{"state"}, {"state", "get"}, {"state", "put"}, {"state", "list"}, {"state", "delete"}, {"events"}} {
		r := e.oxios(append(c, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("oxios %v --help has no example: %s", c, r)
		}
	}
	r = e.oxios("config", "show")
	if r.code != 0 || !strings.Contains(r.stdout, "listen = '127.0.0.1:4200'") {
		t.Fatalf("config show: %s", r)
	}
}

// Acknowledged state writes and events survive SIGKILL of the daemon.
func TestStateAndEventsSurviveSIGKILL(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	r := e.oxios("state", "put", "app", "config/main", `{"mode":"fast","n":1}`)
	if r.code != 0 || !strings.Contains(r.stdout, "app/config/main: revision") {
		t.Fatalf("state put: %s", r)
	}
	rev := strings.TrimSpace(r.stdout[strings.LastIndex(r.stdout, " ")+1:])
	r = e.run([]string{}, "state", "get", "app", "config/main", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"revision": `+rev) {
		t.Fatalf("state get: %s", r)
	}
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest("POST", "http://"+e.listen+"/api/v1/events", strings.NewReader(fmt.Sprintf(`{"type":"custom.tick","data":{"i":%d}}`, i)))
		req.Header.Set("Authorization", "Bearer "+e.token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("publish %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}

	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	e.start()
	defer e.oxios("stop")

	r = e.oxios("state", "get", "app", "config/main", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"revision": `+rev) || !strings.Contains(r.stdout, `"mode": "fast"`) {
		t.Fatalf("state after SIGKILL: %s", r)
	}
	r = e.oxios("events", "--type", "custom.tick", "-o", "json")
	if n := strings.Count(r.stdout, `"type":"custom.tick"`); r.code != 0 || n != 50 {
		t.Fatalf("events after SIGKILL: %d of 50\n%s", n, r)
	}
	r = e.oxios("events", "--type", "state.*")
	if !strings.Contains(r.stdout, "state.put") || !strings.Contains(r.stdout, "config/main") {
		t.Fatalf("state.put event missing: %s", r)
	}
}

func TestStateCLI(t *testing.T) {
	e := newEnv(t)
	e.start()
	defer e.oxios("stop")
	put := func(args ...string) result { return e.oxios(append([]string{"state", "put"}, args...)...) }
	if r := put("app", "k", `{"v":1}`, "--create"); r.code != 0 {
		t.Fatalf("create: %s", r)
	}
	if r := put("app", "k", `{"v":1}`, "--create"); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("create again: %s", r)
	}
	r := e.oxios("state", "get", "app", "k", "-o", "json")
	var entry struct{ Revision uint64 }
	json.Unmarshal([]byte(r.stdout), &entry)
	if r := put("app", "k", `{"v":2}`, "--if-rev", fmt.Sprint(entry.Revision+100)); r.code != 1 || !strings.Contains(r.stderr, "revision mismatch") {
		t.Fatalf("stale --if-rev: %s", r)
	}
	cmd := exec.Command(binary, "state", "put", "app", "k", "--if-rev", fmt.Sprint(entry.Revision))
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home)
	cmd.Stdin = strings.NewReader(`{"v": 2}` + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("put from stdin: %v %s", err, out)
	}
	if r := e.oxios("state", "get", "app", "k"); strings.TrimSpace(r.stdout) != "{\n  \"v\": 2\n}" {
		t.Fatalf("get: %s", r)
	}
	if r := e.oxios("state", "list", "app"); r.code != 0 || !strings.Contains(r.stdout, "KEY") || !strings.Contains(r.stdout, "k ") {
		t.Fatalf("list: %s", r)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"state", "put", "Bad", "k", "1"}, "namespace"},
		{[]string{"state", "put", "app", "k", "{no"}, "value: not valid JSON"},
		{[]string{"state", "get", "app"}, "needs NAMESPACE KEY"},
		{[]string{"state", "put", "app", "k", "1", "--if-rev", "0"}, "--if-rev: revisions start at 1"},
		{[]string{"events", "--type", "Nope.x"}, "--type"},
	} {
		if r := e.oxios(c.args...); r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("oxios %v: want exit 2 naming %q, got %s", c.args, c.want, r)
		}
	}
	if r := e.oxios("state", "delete", "app", "k"); r.code != 0 {
		t.Fatalf("delete: %s", r)
	}
	if r := e.oxios("state", "get", "app", "k"); r.code != 1 || !strings.Contains(r.stderr, "no document app/k") {
		t.Fatalf("get deleted: %s", r)
	}
}

// A valid config whose backbone cannot be reached: the daemon fails at
// boot, start shows why from the log, and nothing is left running.
func TestUnreachableBackbone(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(cfg, []byte("[backbone]\nurl = \"nats://127.0.0.1:1\"\n"), 0o600)
	r := e.oxios("start", "--config", cfg, "--listen", e.listen)
	if r.code != 1 || !strings.Contains(r.stderr, "exited before it was ready") || !strings.Contains(r.stderr, "nats://127.0.0.1:1") {
		t.Fatalf("start with an unreachable backbone: %s", r)
	}
	e.assertNoDaemonFrom(r)
}

// A typo in config.toml while the daemon runs: every command that talks
// to it or reads its state goes on with a warning naming the key; only
// start, reload and config validate refuse the file (issue 15.8: stop,
// status, agent list, dashboard and config show all exited 2).
func TestConfigTypoDoesNotCostTheDaemon(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[daemon]\nstop_timout = \"5s\"\n"), 0o600)
	for _, args := range [][]string{{"status"}, {"agent", "list"}, {"dashboard", "--print"}, {"config", "show"}, {"events", "--since", "0"}} {
		r := e.oxios(args...)
		if r.code != 0 || !strings.Contains(r.stderr, "warning:") || !strings.Contains(r.stderr, "stop_timout") {
			t.Errorf("oxios %v with a typo: %s", args, r)
		}
	}
	if r := e.oxios("config", "validate"); r.code != 2 || !strings.Contains(r.stderr, "stop_timout") {
		t.Errorf("config validate: %s", r)
	}
	if r := e.oxios("reload"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "stop_timout") {
		t.Errorf("reload: %s", r)
	}
	if r := e.oxios("stop"); r.code != 0 {
		t.Fatalf("stop with a typo: %s", r)
	}
	if r := e.oxios("start"); r.code != 2 || !strings.Contains(r.stderr, "stop_timout") {
		t.Errorf("start with a typo: %s", r)
	}
}

// The socket handed over is the daemon's alone: an agent it runs does not
// hold it, so cannot accept the API's connections (and their tokens).
func TestHandedSocketStaysWithTheDaemon(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	e.stopAtEnd()
	rec := e.spawnJSON("--name", "listener", "--", "sleep", "30")
	e.waitAgent(rec.ID, func(r oxios.Record) bool { return r.State == oxios.Running && r.PID != 0 })
	if holders := socketHolders(t, e.ln); len(holders) != 1 || holders[0] != pid {
		t.Fatalf("the socket is held by PIDs %v; only the daemon (%d) may hold it", holders, pid)
	}
	if r := e.oxios("agent", "kill", rec.ID); r.code != 0 {
		t.Fatal(r)
	}
}
