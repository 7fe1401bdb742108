package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/proc"
)

// stopAtEnd stops the daemon gracefully when the test ends, so that its
// agents are stopped too (newEnv's own cleanup only SIGKILLs).
func (e *env) stopAtEnd() {
	e.t.Cleanup(func() {
		if e.pidIfRunning() != 0 {
			e.oxios("stop")
		}
	})
}

func (e *env) spawnJSON(args ...string) oxios.Record {
	e.t.Helper()
	r := e.oxios(append([]string{"agent", "spawn", "-o", "json"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("spawn: %s", r)
	}
	var rec oxios.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		e.t.Fatalf("spawn output: %v\n%s", err, r)
	}
	return rec
}

func (e *env) agent(id string) oxios.Record {
	e.t.Helper()
	r := e.oxios("agent", "get", id, "-o", "json")
	if r.code != 0 {
		e.t.Fatalf("agent get: %s", r)
	}
	var rec oxios.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// waitAgent polls until the agent's record satisfies ok.
func (e *env) waitAgent(id string, ok func(oxios.Record) bool) oxios.Record {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec := e.agent(id)
		if ok(rec) {
			return rec
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent %s never reached the expected state: %+v", id, rec)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentCLI(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()

	// wait's exit status follows the outcome.
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--", "sh", "-c", "echo hello; echo oops >&2"}, 0, "succeeded (exit status 0)"},
		{[]string{"--", "sh", "-c", "exit 7"}, 1, "failed (exit status 7)"},
		{[]string{"--", "oxios-no-such-binary"}, 1, "failed (executable not found: oxios-no-such-binary)"},
	} {
		r := e.oxios(append([]string{"agent", "spawn", "--wait"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stdout, c.out) {
			t.Fatalf("spawn --wait %v: want exit %d and %q\n%s", c.args, c.code, c.out, r)
		}
	}

	// Logs hold stdout and stderr.
	ok := e.spawnJSON("--name", "greeter", "--", "sh", "-c", "echo hello; echo oops >&2")
	if r := e.oxios("agent", "wait", ok.ID); r.code != 0 {
		t.Fatal(r)
	}
	if r := e.oxios("agent", "logs", ok.ID); r.code != 0 || r.stdout != "hello\noops\n" {
		t.Fatalf("logs: %s", r)
	}

	// A killed agent: wait exits 3; a wait that times out exits 124.
	long := e.spawnJSON("--", "sleep", "1000")
	if r := e.oxios("agent", "wait", long.ID, "--timeout", "200ms"); r.code != 124 || !strings.Contains(r.stderr, "still running") {
		t.Fatalf("wait with a timeout: %s", r)
	}
	if r := e.oxios("agent", "kill", long.ID); r.code != 0 || !strings.Contains(r.stdout, "killed") {
		t.Fatalf("kill: %s", r)
	}
	if r := e.oxios("agent", "wait", long.ID); r.code != 3 || !strings.Contains(r.stdout, "killed (kill requested)") {
		t.Fatalf("wait on a killed agent: %s", r)
	}
	if r := e.oxios("agent", "kill", long.ID); r.code != 1 || !strings.Contains(r.stderr, "already ended") {
		t.Fatalf("killing an ended agent: %s", r)
	}

	// list filters, newest first.
	r := e.oxios("agent", "list", "--name", "greeter", "-o", "json")
	var recs []oxios.Record
	if json.Unmarshal([]byte(r.stdout), &recs); len(recs) != 1 || recs[0].ID != ok.ID {
		t.Fatalf("list --name: %s", r)
	}
	r = e.oxios("agent", "list")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 6 || !strings.HasPrefix(lines[1], long.ID) {
		t.Fatalf("list: %s", r)
	}

	// rm deletes ended agents only.
	running := e.spawnJSON("--", "sleep", "1000")
	if r := e.oxios("agent", "rm", running.ID); r.code != 1 || !strings.Contains(r.stderr, "kill it first") {
		t.Fatalf("rm of a running agent: %s", r)
	}
	if r := e.oxios("agent", "rm", ok.ID); r.code != 0 {
		t.Fatal(r)
	}
	if r := e.oxios("agent", "get", ok.ID); r.code != 1 || !strings.Contains(r.stderr, "no such agent") {
		t.Fatalf("get after rm: %s", r)
	}

	// Bad input: exit 2 with one line naming the field.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "spawn"}, "needs a command"},
		{[]string{"agent", "spawn", "--restart", "sometimes", "--", "true"}, "restart.policy: must be never, on-failure or always"},
		{[]string{"agent", "spawn", "--priority", "urgent", "--", "true"}, "priority: must be one of critical, high, normal, low"},
		{[]string{"agent", "spawn", "--timeout", "-1s", "--", "true"}, "timeout: must not be negative"},
		{[]string{"agent", "spawn", "--max-restarts", "-3", "--", "true"}, "restart.max_restarts"},
		{[]string{"agent", "spawn", "--env", "NOEQUALS", "--", "true"}, "--env: must be KEY=VALUE"},
		{[]string{"agent", "list", "--state", "sleeping"}, `state: unknown state "sleeping"`},
		{[]string{"agent", "wait"}, "needs an agent ID"},
	} {
		r := e.oxios(c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: want exit 2 naming %q\n%s", c.args, c.want, r)
		}
	}
}

// leftover reports whether the process group of rec's run is still alive.
func leftover(rec oxios.Record) bool {
	return len(proc.Leftovers(rec.PID, rec.ProcStart, "OXIOS_AGENT_ID="+rec.ID)) > 0
}

// After SIGKILL of the daemon, the next boot terminates what the old run
// left (found by PID and start time), restarts the agent whose policy says
// so with reason "daemon restart", and fails the other with "interrupted".
// A graceful stop then leaves no agent process behind.
func TestAgentsRecoverAfterSIGKILL(t *testing.T) {
	e := newEnv(t)
	pid := e.start()
	e.stopAtEnd()
	svc := e.spawnJSON("--name", "svc", "--restart", "always", "--", "sh", "-c", "sleep 1000 & sleep 1000; wait")
	once := e.spawnJSON("--name", "once", "--", "sleep", "1000")
	svcRun := e.waitAgent(svc.ID, func(r oxios.Record) bool { return r.State == oxios.Running })
	onceRun := e.waitAgent(once.ID, func(r oxios.Record) bool { return r.State == oxios.Running })

	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	if !leftover(svcRun) || !leftover(onceRun) {
		t.Fatal("the agents died with the daemon; nothing to recover")
	}

	e.start()
	got := e.waitAgent(once.ID, func(r oxios.Record) bool { return r.State.Terminal() })
	if got.State != oxios.Failed || got.Reason != "interrupted" {
		t.Fatalf("never-restart agent after SIGKILL: %s %q", got.State, got.Reason)
	}
	got = e.waitAgent(svc.ID, func(r oxios.Record) bool { return r.State == oxios.Running && r.PID != svcRun.PID })
	if got.Reason != "daemon restart" {
		t.Fatalf("always-restart agent after SIGKILL: reason %q", got.Reason)
	}
	if leftover(svcRun) || leftover(onceRun) {
		t.Fatal("processes of the old daemon's agents survived its restart")
	}
	// The audit trail kept every spawn across the SIGKILL, and verifies.
	r := e.oxios("audit", "list", "--action", "agent.spawn", "-o", "json")
	if r.code != 0 || strings.Count(r.stdout, `"action": "agent.spawn"`) != 2 {
		t.Fatalf("audit after SIGKILL: %s", r)
	}
	if r = e.oxios("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify after SIGKILL: %s", r)
	}
	if r := e.oxios("stop"); r.code != 0 {
		t.Fatal(r)
	}
	if leftover(got) {
		t.Fatal("a graceful stop left the agent's processes running")
	}
}

// agent logs -f prints what the agent writes, as it writes it, and ends
// when the agent ends.
func TestAgentLogsFollow(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	dir := t.TempDir()
	gate := filepath.Join(dir, "go")
	rec := e.spawnJSON("--dir", dir, "--", "sh", "-c", "echo first; while [ ! -f go ]; do sleep 0.02; done; echo second")
	e.waitAgent(rec.ID, func(r oxios.Record) bool { return r.State == oxios.Running })
	done := make(chan result, 1)
	go func() { done <- e.oxios("agent", "logs", "-f", rec.ID) }()
	// The follower is attached once the agent's first line is out; then
	// let the agent finish.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(e.logPath(rec.ID)), "first") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(gate, nil, 0o600)
	select {
	case r := <-done:
		if r.code != 0 || r.stdout != "first\nsecond\n" {
			t.Fatalf("logs -f: %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f did not end with the agent")
	}
}

func (e *env) logPath(id string) string { return filepath.Join(e.home, "logs", "agents", id+".log") }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// runIn runs the CLI from dir, as a user in that directory would.
func (e *env) runIn(dir string, args ...string) result {
	e.t.Helper()
	return e.runFrom(dir, nil, args...)
}

// The README's headline example, run as written from the directory that
// holds agent.py (issue 15.8: it ran in an empty workspace, could not find
// agent.py and hit its restart limit).
func TestHeadlineExampleFromItsDirectory(t *testing.T) {
	if _, err := lookPathIn("python3"); err != nil {
		t.Skip("python3 is not installed in the system directories")
	}
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	proj := t.TempDir()
	os.WriteFile(filepath.Join(proj, "agent.py"), []byte("import os\nprint('hello from', os.getcwd())\nopen('ran.txt', 'w').write('yes')\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "worker.sh"), []byte("#!/bin/sh\necho worker ran\n"), 0o755)
	r := e.runIn(proj, "agent", "spawn", "--name", "web", "--restart", "on-failure", "--wait", "--", "python3", "agent.py")
	if r.code != 0 || !strings.Contains(r.stderr, "dir: "+proj) {
		t.Fatalf("headline example: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(proj, "ran.txt")); string(b) != "yes" {
		t.Fatalf("agent.py did not run in %s", proj)
	}
	if r := e.runIn(proj, "agent", "spawn", "--wait", "--", "./worker.sh"); r.code != 0 {
		t.Fatalf("./worker.sh from its directory: %s", r)
	}
	// Without a relative path to run, the agent gets its own workspace.
	if r := e.runIn(proj, "agent", "spawn", "--wait", "--", "true"); r.code != 0 || strings.Contains(r.stderr, "dir:") {
		t.Fatalf("a plain command: %s", r)
	}
}

// Ctrl-C on agent spawn --wait ends the wait, not the agent, and says so
// with how to stop it (issue 15.8: it left without a word).
func TestSpawnWaitInterrupted(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	cmd := exec.Command(binary, "agent", "spawn", "--name", "long", "--wait", "--", "sleep", "60")
	cmd.Env = append(cleanEnv(), "OXIOS_HOME="+e.home, "NO_COLOR=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var id string
	deadline := time.Now().Add(15 * time.Second)
	for id == "" {
		var recs []oxios.Record
		json.Unmarshal([]byte(e.oxios("agent", "list", "--name", "long", "-o", "json").stdout), &recs)
		if len(recs) == 1 && recs[0].State == oxios.Running {
			id = recs[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("the agent did not run")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(errb.String(), "keeps running (oxios agent kill "+id+" stops it)") {
		t.Fatalf("interrupted wait: %v\n%s", err, errb.String())
	}
	if rec := e.agent(id); rec.State != oxios.Running {
		t.Fatalf("the agent is %s", rec.State)
	}
}

// With the default config, 300 process agents run at once (issue 15.8: the
// default max_running of 256 queued the 257th without a word, where PM2
// and supervisord run 300); with a cap set, a queued agent says which
// limit it waits for, at spawn and in the list.
func TestDefaultCapDoesNotSurprise(t *testing.T) {
	if testing.Short() {
		t.Skip("300 processes")
	}
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	const n = 300
	tok := e.token()
	for i := range n {
		// Long enough to outlive 300 spawns on a loaded machine: they must
		// all run at once.
		body := fmt.Sprintf(`{"name": "s%d", "command": "sleep", "args": ["600"]}`, i)
		req, _ := http.NewRequest("POST", "http://"+e.listen+"/api/v1/agents", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("spawn %d: %d", i, resp.StatusCode)
		}
	}
	var sched oxios.SchedulerSnapshot
	deadline := time.Now().Add(2 * time.Minute)
	for {
		json.Unmarshal([]byte(e.oxios("scheduler", "-o", "json").stdout), &sched)
		if sched.Running == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sched.Running != n || sched.QueuedTotal != 0 || sched.Limits.MaxRunning < n {
		t.Fatalf("with the default cap: %d running, %d queued, limit %d", sched.Running, sched.QueuedTotal, sched.Limits.MaxRunning)
	}
	var recs []oxios.Record
	json.Unmarshal([]byte(e.oxios("agent", "list", "--limit", "1000", "-o", "json").stdout), &recs)
	ids := []string{"agent", "kill"}
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if r := e.oxios(ids...); r.code != 0 {
		t.Fatalf("kill: %.500s", r)
	}

	// A cap that is set: the agent past it says why it waits.
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[scheduler]\nmax_running = 2\n"), 0o600)
	if r := e.oxios("reload"); r.code != 0 {
		t.Fatalf("reload: %s", r)
	}
	e.spawnJSON("--", "sleep", "60")
	e.spawnJSON("--", "sleep", "60")
	r := e.oxios("agent", "spawn", "--", "sleep", "60")
	if r.code != 0 || !strings.Contains(r.stdout, "queued: 2 of 2 running (position 1)") {
		t.Fatalf("spawn past the cap: %s", r)
	}
	if l := e.oxios("agent", "list", "--state", "queued"); !strings.Contains(l.stdout, "queued: 2 of 2 running") {
		t.Fatalf("agent list: %s", l)
	}
}
