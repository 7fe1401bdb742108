package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

// cli runs the CLI with a's seams, without a daemon, and returns its exit
// code, stdout and stderr.
func cli(a *app, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	a.stdout, a.stderr = &out, &errb
	return a.execute(args), out.String(), errb.String()
}

// agent spawn's flags build the spec, and leave every default to it.
func TestSpawnFlags(t *testing.T) {
	t.Setenv("OXIOS_HOME", t.TempDir())
	var got oxios.Spec
	var waited bool
	a := &app{seams: seams{spawnF: func(s oxios.Spec, wait bool) error { got, waited = s, wait; return nil }}}
	code, _, errs := cli(a, "agent", "spawn", "--name", "web", "--restart", "always", "--env", "A=1", "-l", "team=x",
		"--memory-mb", "64", "--network", "none", "--secret-env", "KEY", "--wait", "--", "/bin/echo", "hi")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got.Kind != oxios.KindProcess || got.Name != "web" || got.Command != "/bin/echo" || len(got.Args) != 1 || got.Args[0] != "hi" ||
		got.Restart.Policy != oxios.Always || got.Env["A"] != "1" || got.Labels["team"] != "x" || !waited ||
		got.Sandbox == nil || got.Sandbox.Limits.MemoryMB != 64 || got.Sandbox.Network != oxios.NetNone || len(got.SecretEnv) != 1 {
		t.Fatalf("spec %+v (wait %v)", got, waited)
	}
	// What was not given is the spec's to fill, once.
	if got.Priority != "" || got.Restart.MaxRestarts != 0 || got.Restart.Window != "" || got.Restart.Backoff.Initial != "" ||
		got.StopSignal != "" || got.Timeout != "" || got.StopTimeout != "" {
		t.Fatalf("the CLI applied defaults: %+v", got)
	}

	code, _, errs = cli(a, "agent", "spawn", "--kind", "llm", "--goal", "count the files", "--model", "openai/gpt-4.1-mini", "--timeout", "5m")
	if code != 0 || got.Kind != oxios.KindLLM || got.Goal != "count the files" || got.Model != "openai/gpt-4.1-mini" || got.Timeout != "5m" || got.Command != "" {
		t.Fatalf("llm: exit %d %s: %+v", code, errs, got)
	}
}

// Bad flags are a usage error (exit 2) in one line naming the flag, and
// nothing is sent.
func TestSpawnBadFlags(t *testing.T) {
	t.Setenv("OXIOS_HOME", t.TempDir())
	sent := false
	a := &app{seams: seams{spawnF: func(oxios.Spec, bool) error { sent = true; return nil }}}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "spawn", "--env", "NOEQUALS", "--", "true"}, "--env"},
		{[]string{"agent", "spawn", "--kind", "robot", "--", "true"}, "--kind"},
		{[]string{"agent", "spawn"}, "needs a command"},
		{[]string{"agent", "spawn", "--kind", "llm", "--", "true"}, "--goal"},
		{[]string{"agent", "spawn", "--goal", "x", "--", "true"}, "--goal is for llm agents"},
		{[]string{"agent", "spawn", "--memory-mb", "lots", "--", "true"}, "memory-mb"},
	} {
		code, out, errs := cli(a, c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || out != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", c.args, code, errs, out)
		}
	}
	if sent {
		t.Fatal("a bad command line was sent")
	}
}

// cron add's flags build the job; its spec and policies keep their
// defaults to the daemon.
func TestCronAddFlags(t *testing.T) {
	t.Setenv("OXIOS_HOME", t.TempDir())
	var got client.CronJob
	a := &app{seams: seams{cronF: func(j client.CronJob) error { got = j; return nil }}}
	code, _, errs := cli(a, "cron", "add", "backup", "--schedule", "0 3 * * *", "--zone", "Europe/Berlin", "--missed", "run-once", "--env", "X=1", "--", "/usr/local/bin/backup.sh", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got.Name != "backup" || got.Schedule != "0 3 * * *" || got.Zone != "Europe/Berlin" || got.Missed != "run-once" || got.Overlap != "" ||
		got.Spec.Command != "/usr/local/bin/backup.sh" || len(got.Spec.Args) != 1 || got.Spec.Env["X"] != "1" || got.Spec.Kind != "" || got.Enabled != nil {
		t.Fatalf("job %+v", got)
	}
	if code, _, errs := cli(a, "cron", "add", "nameless"); code != exitUsage || !strings.Contains(errs, "--schedule") {
		t.Fatalf("no schedule: exit %d %q", code, errs)
	}
}

// An agent is shown as fields for people and as its record with -o json.
func TestPrintRecord(t *testing.T) {
	exit := 0
	cost := 0.0123
	r := oxios.Record{ID: "0192-abc", Name: "digest", Kind: oxios.KindLLM, State: oxios.Succeeded, Reason: "exited 0", ExitCode: &exit,
		CreatedAt: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC), Steps: 2, Usage: oxios.Usage{TokensIn: 120, TokensOut: 30, CostUSD: &cost},
		Spec: oxios.Spec{Goal: "summarize", Model: "openai/gpt-4.1-mini", MaxSteps: 20}, Output: "three files",
		ToolCalls: []oxios.ToolCall{{Step: 1, Name: "list_dir", Args: `{"path":"."}`, DurationMS: 3}}}
	t.Setenv("NO_COLOR", "1")
	var out bytes.Buffer
	a := &app{stdout: &out, output: "table"}
	a.printRecord(r)
	for _, want := range []string{"0192-abc", "succeeded", "2 of 20", "120 in, 30 out", "$0.0123", "1. list_dir", "three files"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("NO_COLOR is set, yet the table is painted:\n%q", out.String())
	}
	out.Reset()
	a.output = "json"
	a.printRecord(r)
	var back oxios.Record
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.ID != r.ID || back.Usage.TokensIn != 120 || back.Spec.Goal != "summarize" {
		t.Fatalf("json: %v %+v\n%s", err, back, out.String())
	}
}

// state put checks its value and flags before anything is sent, and
// prints the revision the write got, for people and with -o json.
func TestStatePutFlags(t *testing.T) {
	t.Setenv("OXIOS_HOME", t.TempDir())
	var gotNS, gotKey, gotValue string
	var gotOpts client.PutOptions
	a := &app{seams: seams{statePutF: func(ns, key string, value []byte, o client.PutOptions) (uint64, error) {
		gotNS, gotKey, gotValue, gotOpts = ns, key, string(value), o
		return 7, nil
	}}}
	code, out, errs := cli(a, "state", "put", "app", "config", `{"mode": "fast"}`, "--if-rev", "6")
	if code != 0 || gotNS != "app" || gotKey != "config" || gotValue != `{"mode": "fast"}` || gotOpts.IfRevision != 6 || gotOpts.Create {
		t.Fatalf("exit %d %q: %s/%s %q %+v", code, errs, gotNS, gotKey, gotValue, gotOpts)
	}
	if out != "app/config: revision 7\n" {
		t.Fatalf("table: %q", out)
	}
	code, out, _ = cli(a, "state", "put", "app", "lock", `"me"`, "--create", "-o", "json")
	var back map[string]any
	if code != 0 || !gotOpts.Create || json.Unmarshal([]byte(out), &back) != nil || back["revision"] != float64(7) || back["key"] != "lock" {
		t.Fatalf("json: exit %d %q %+v", code, out, gotOpts)
	}
	gotKey = ""
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"state", "put", "app", "k", "not json"}, "value: not valid JSON"},
		{[]string{"state", "put", "app", "k", "1", "--create", "--if-rev", "2"}, "cannot be used together"},
		{[]string{"state", "put", "app", "k", "1", "--if-rev", "0"}, "revisions start at 1"},
		{[]string{"state", "put", "app"}, "needs NAMESPACE KEY"},
	} {
		if code, _, errs := cli(a, c.args...); code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d %q", c.args, code, errs)
		}
	}
	if gotKey != "" {
		t.Fatal("a bad command line was sent")
	}
}
