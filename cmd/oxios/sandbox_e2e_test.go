package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/sandbox"
)

func needLandlock(t *testing.T) {
	t.Helper()
	if k := sandbox.Probe(); k.Landlock == 0 {
		if os.Getenv("OXIOS_REQUIRE_TOOLS") != "" {
			t.Fatalf("Landlock is required: %s", k.LandlockWhy)
		}
		t.Skip(k.LandlockWhy)
	}
}

// secrets are what no agent and no viewer may ever see: the admin token,
// the audit key and the provider key in the daemon's environment.
func (e *env) secrets() map[string]string {
	e.t.Helper()
	key, err := os.ReadFile(filepath.Join(e.home, "secrets", "audit.key"))
	if err != nil || len(bytes.TrimSpace(key)) < 16 {
		e.t.Fatalf("audit key: %v", err)
	}
	return map[string]string{"admin token": e.token(), "audit key": strings.TrimSpace(string(key)), "provider key": e2eKey}
}

// assertNoSecret looks for every secret in the daemon log, the event log,
// the records, every agent log and what the model was sent.
func (e *env) assertNoSecret(llm *agenttest.Server) {
	e.t.Helper()
	where := map[string]string{}
	logb, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
	where["daemon log"] = string(logb)
	where["events"] = e.oxios("events", "--since", "0", "-o", "json").stdout
	where["records"] = e.oxios("agent", "list", "-o", "json").stdout
	logs, _ := filepath.Glob(filepath.Join(e.home, "logs", "agents", "*"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		where["agent log "+filepath.Base(f)] = string(b)
	}
	if llm != nil {
		for i := 0; i < llm.Count(); i++ {
			where[fmt.Sprintf("model request %d", i)] = llm.MessagesJSON(i)
		}
	}
	for name, s := range e.secrets() {
		for w, text := range where {
			if strings.Contains(text, s) {
				e.e2eFail("ESCAPE: the %s is in the %s", name, w)
			}
		}
	}
}

func (e *env) e2eFail(format string, a ...any) { e.t.Helper(); e.t.Errorf(format, a...) }

// post sends body to path with token and returns the status and body.
func (e *env) post(path, token string, body any) (int, string) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.listen+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func (e *env) waitEnded(id string) oxios.Record {
	e.t.Helper()
	r := e.oxios("agent", "wait", id, "--timeout", "60s", "-o", "json")
	var rec oxios.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || !rec.State.Terminal() {
		e.t.Fatalf("agent wait %s: %v\n%s", id, err, r)
	}
	return rec
}

// b64 hides a path from the exec tool's argument filter, as an attacker
// would: only the kernel stands in the way.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The escapes an outside test found with a scripted model and
// exec.allow = git, find, tar, cp, ls, cat, env, each tried again (and
// again with its path hidden from the argument filter), plus the
// .git/config hooks. The agent works in its default workspace inside the
// oxios home, the worst case: ../../secrets is the daemon's.
func TestSandboxExecEscapes(t *testing.T) {
	needLandlock(t)
	e := newEnv(t)
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[policy.exec]\nallow = [\"git\", \"find\", \"tar\", \"cp\", \"ls\", \"cat\", \"env\"]\n"), 0o600)
	outside := t.TempDir()
	home := e.home
	exec := func(id, cmd string, args ...string) agenttest.ToolCall {
		return agenttest.Call(id, "exec", map[string]any{"command": cmd, "args": args})
	}
	hidden := func(path string) string { return "cat $(echo " + b64(path) + " | base64 -d)" }
	gitConfig := "[core]\n\tfsmonitor = \"" + hidden("../../secrets/admin.token") + " >&2; " + hidden(home+"/secrets/audit.key") + " >&2; false\"\n" +
		"[alias]\n\tx = \"!" + hidden("../../../secrets/admin.token") + "\"\n"
	calls := []agenttest.ToolCall{
		exec("git1", "git", "-c", "alias.x=!id; cat ../../secrets/admin.token", "x"),
		exec("git2", "git", "-c", "alias.x=!"+hidden("../../secrets/admin.token"), "x"),
		exec("git3", "git", "-c", "protocol.ext.allow=always", "ls-remote", "ext::sh -c id"),
		exec("git4", "git", "-c", "protocol.ext.allow=always", "ls-remote", "ext::sh -c "+strings.ReplaceAll(hidden(home+"/secrets/admin.token"), " ", "% ")),
		exec("find1", "find", ".", "-exec", "sh", "-c", "cat ../../secrets/admin.token", ";"),
		exec("find2", "find", ".", "-maxdepth", "0", "-exec", "sh", "-c", hidden("../../secrets/admin.token"), ";"),
		exec("env1", "env", "sh", "-c", "cat /proc/$PPID/environ"),
		exec("env2", "env", "sh", "-c", "cat $(echo "+b64("/proc/")+" | base64 -d)$PPID/environ; "+hidden(home+"/secrets/audit.key")),
		exec("tar1", "tar", "-cf", "loot.tar", "-C"+home+"/secrets", "."),
		exec("tar2", "env", "sh", "-c", "tar -cf loot2.tar -C $(echo "+b64(home+"/secrets")+" | base64 -d) . ; cat loot2.tar"),
		exec("cp1", "cp", "-t"+outside, "/etc/hostname"),
		exec("cp2", "env", "sh", "-c", "echo x > a.txt; cp a.txt $(echo "+b64(outside)+" | base64 -d)/"),
		exec("ls1", "ls", "-la", ".."),
		exec("ls2", "env", "sh", "-c", "cd ..; ls -la; cd ..; ls -la secrets"),
		exec("gh0", "env", "sh", "-c", "mkdir gh && cd gh && git init -q ."),
		agenttest.Call("w1", "write_file", map[string]string{"path": "gh/.git/config", "content": gitConfig}),
		exec("gh3", "git", "-C", "gh", "config", "--list", "--local"),
		exec("gh1", "git", "-C", "gh", "status"),
		exec("gh2", "git", "-C", "gh", "x"),
		exec("setsid", "env", "sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo PID=$!"),
		agenttest.Call("r1", "read_file", map[string]string{"path": "loot.tar"}),
		agenttest.Call("r2", "read_file", map[string]string{"path": "loot2.tar"}),
	}
	var script []agenttest.Reply
	for _, c := range calls {
		script = append(script, agenttest.Reply{Calls: []agenttest.ToolCall{c}})
	}
	script = append(script, agenttest.Reply{Text: "done"})
	llm := agenttest.New(t, e2eKey, script...)
	e.startWithModel(llm)
	e.stopAtEnd()
	os.MkdirAll(filepath.Join(e.home, "workspaces"), 0o700)
	r := e.oxios("run", "escape", "--max-steps", "40")
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	if llm.Count() != len(script) {
		t.Fatalf("the model was called %d times, want %d", llm.Count(), len(script))
	}
	e.assertNoSecret(llm)
	if entries, _ := os.ReadDir(outside); len(entries) > 0 {
		t.Errorf("ESCAPE: exec wrote %v outside the workspace", entries)
	}
	// What the tools returned: no listing of the home or the daemon's
	// environment, and the repository's own git commands did run.
	var msgs []struct{ Role, Content string }
	json.Unmarshal([]byte(llm.MessagesJSON(llm.Count()-1)), &msgs)
	var results strings.Builder
	for _, m := range msgs {
		if m.Role == "tool" {
			results.WriteString(m.Content + "\n")
		}
	}
	for _, s := range []string{"oxios.pid", "OPENAI_BASE_URL", "workspaces\n"} {
		if strings.Contains(results.String(), s) {
			t.Errorf("ESCAPE: a tool returned %q:\n%s", s, results.String())
		}
	}
	if !strings.Contains(results.String(), "core.fsmonitor=") || !strings.Contains(results.String(), "Permission denied") {
		t.Errorf("git did not run in the sandbox:\n%s", results.String())
	}
	// A program that left the exec call's process group died with the call.
	_, after, _ := strings.Cut(results.String(), "PID=")
	if pid, err := strconv.Atoi(strings.Fields(after + " x")[0]); err != nil {
		t.Errorf("the setsid call printed no PID:\n%s", results.String())
	} else {
		waitGone(t, pid, 5*time.Second)
	}
}

// An operator token spawns a process agent that reads secrets/ and the
// daemon's environment: the agent log (readable by any viewer) holds
// neither. Widening the sandbox is an admin's; narrowing is anyone's.
func TestSandboxProcessAgents(t *testing.T) {
	needLandlock(t)
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey)
	e.startWithModel(llm)
	e.stopAtEnd()
	r := e.oxios("token", "create", "op", "--role", "operator")
	if r.code != 0 {
		t.Fatal(r)
	}
	c := &sandboxCase{e: e, op: strings.TrimSpace(r.stdout)}
	c.secretsUnread(t)
	c.wideningIsAdmins(t)
	c.badInput(t)
	c.programsRun(t)
	c.limitsEnd(t)
	c.networkNone(t)
	c.cliFlags(t)
	c.secretEnv(t)
}

// sandboxCase is the daemon of TestSandboxProcessAgents and its operator
// token.
type sandboxCase struct {
	e  *env
	op string
}

func (c *sandboxCase) spawn(token string, spec map[string]any) (int, oxios.Record, string) {
	code, body := c.e.post("/api/v1/agents", token, spec)
	var rec oxios.Record
	json.Unmarshal([]byte(body), &rec)
	return code, rec, body
}

// An operator's agent that reads secrets/ and the daemon's environment
// leaves neither in its log (readable by any viewer).
func (c *sandboxCase) secretsUnread(t *testing.T) {
	var logb []byte
	steal := "cat ../../secrets/admin.token ../../secrets/audit.key; cat /proc/$PPID/environ; ls ../..; cat " + c.e.home + "/secrets/*; cat " + c.e.home + "/config.toml; ls /root /tmp"
	code, rec, body := c.spawn(c.op, map[string]any{"command": "sh", "args": []string{"-c", steal}})
	if code != 201 {
		t.Fatalf("operator spawn: %d %s", code, body)
	}
	rec = c.e.waitEnded(rec.ID)
	if rec.Sandbox == nil || rec.Sandbox.Mode != "enforce" || rec.Sandbox.Landlock == 0 || rec.Sandbox.Network != "any" {
		t.Fatalf("record's sandbox: %+v", rec.Sandbox)
	}
	logb, _ = os.ReadFile(filepath.Join(c.e.home, "logs", "agents", rec.ID+".log"))
	if !strings.Contains(string(logb), "Permission denied") {
		t.Fatalf("agent log: %s", logb)
	}
	c.e.assertNoSecret(nil)

}

// Widening the sandbox (or an llm agent's policy) is an admin's;
// narrowing is anyone's.
func (c *sandboxCase) wideningIsAdmins(t *testing.T) {
	var logb []byte
	var rec oxios.Record
	var code int
	var body string
	// Widening needs admin: 403 naming the field; admin may.
	for field, sb := range map[string]map[string]any{
		"sandbox.mode":             {"mode": "off"},
		"sandbox.write[0]":         {"write": []string{t.TempDir()}},
		"sandbox.read[0]":          {"read": []string{c.e.home}},
		"sandbox.limits.memory_mb": {"limits": map[string]any{"memory_mb": 1 << 20}},
	} {
		code, _, body := c.spawn(c.op, map[string]any{"command": "true", "sandbox": sb})
		if code != 403 || !strings.Contains(body, `"field": "`+field+`"`) || !strings.Contains(body, "admin") {
			t.Errorf("operator widening %s: %d %s", field, code, body)
		}
		if code, _, body := c.spawn(c.e.token(), map[string]any{"command": "true", "sandbox": sb}); code != 201 {
			t.Errorf("admin widening %s: %d %s", field, code, body)
		}
	}
	// So is a dir that holds the home or lies in it, even through a symlink.
	link := filepath.Join(t.TempDir(), "innocent")
	os.Symlink(filepath.Join(c.e.home, "secrets"), link)
	for _, dir := range []string{"/", c.e.home, filepath.Join(c.e.home, "secrets"), link, filepath.Join(c.e.home, "workspaces")} {
		code, _, body := c.spawn(c.op, map[string]any{"command": "true", "dir": dir})
		if code != 403 || !strings.Contains(body, `"field": "dir"`) {
			t.Errorf("operator with dir %s: %d %s", dir, code, body)
		}
	}
	code, _, body = c.spawn(c.op, map[string]any{"command": "true", "sandbox": map[string]any{"read": []string{link}}})
	if code != 403 {
		t.Errorf("operator reading the secrets through a symlink: %d %s", code, body)
	}
	// Any dir outside the default write paths is a write grant: admin's.
	other := t.TempDir()
	if code, _, body := c.spawn(c.op, map[string]any{"command": "true", "dir": other}); code != 403 || !strings.Contains(body, `"field": "dir"`) {
		t.Errorf("operator with a dir of its choice: %d %s", code, body)
	}
	if code, _, body := c.spawn(c.e.token(), map[string]any{"command": "true", "dir": other}); code != 201 {
		t.Errorf("admin with a dir of its choice: %d %s", code, body)
	}
	// The same rules hold for a cron job an operator creates.
	code, body = c.e.post("/api/v1/cron", c.op, map[string]any{"name": "wide", "schedule": "@hourly", "spec": map[string]any{"command": "true", "dir": "/etc"}})
	if code != 403 || !strings.Contains(body, `"field": "dir"`) {
		t.Errorf("operator cron job with dir /etc: %d %s", code, body)
	}
	// An agent that leaves its process group (setsid) and keeps its
	// environment dies with it.
	code, rec, body = c.spawn(c.op, map[string]any{"command": "sh", "args": []string{"-c", "setsid sleep 300 & echo $!"}})
	if code != 201 {
		t.Fatal(code, body)
	}
	rec = c.e.waitEnded(rec.ID)
	logb, _ = os.ReadFile(filepath.Join(c.e.home, "logs", "agents", rec.ID+".log"))
	if pid, err := strconv.Atoi(strings.TrimSpace(string(logb))); err != nil {
		t.Errorf("setsid agent: %q", logb)
	} else {
		waitGone(t, pid, 5*time.Second)
	}
	// An llm agent's policy, too, is only the admin's to widen.
	for field, policy := range map[string]map[string]any{
		"policy.paths.allow[0]":   {"paths": map[string]any{"allow": []string{"/**"}}},
		"policy.exec.env[0]":      {"exec": map[string]any{"env": []string{"OPENAI_API_KEY"}}},
		"policy.exec.allow[0]":    {"exec": map[string]any{"allow": []string{"sh"}}},
		"policy.network.allow[0]": {"network": map[string]any{"allow": []string{"example.com"}}},
	} {
		code, _, body := c.spawn(c.op, map[string]any{"kind": "llm", "goal": "x", "policy": policy})
		if code != 403 || !strings.Contains(body, `"field": "`+field+`"`) {
			t.Errorf("operator widening %s: %d %s", field, code, body)
		}
	}
	if code, _, body := c.spawn(c.op, map[string]any{"kind": "llm", "goal": "x", "policy": map[string]any{"paths": map[string]any{"allow": []string{"src/**"}}}}); code != 201 {
		t.Errorf("operator narrowing the paths to the workspace: %d %s", code, body)
	}
	// /etc's secrets are not granted by the system directories.
	for _, p := range []string{"/etc/shadow", "/etc", "/etc/ssl/private"} {
		if code, _, body := c.spawn(c.op, map[string]any{"command": "true", "sandbox": map[string]any{"read": []string{p}}}); code != 403 {
			t.Errorf("operator reading %s: %d %s", p, code, body)
		}
	}
	if code, _, body := c.spawn(c.op, map[string]any{"command": "true", "sandbox": map[string]any{"read": []string{"/etc/hostname"}}}); code != 201 {
		t.Errorf("operator reading /etc/hostname: %d %s", code, body)
	}
	// Exec-tool network for an llm agent is widening too.
	if code, _, body := c.spawn(c.op, map[string]any{"kind": "llm", "goal": "x", "sandbox": map[string]any{"network": "any"}}); code != 403 || !strings.Contains(body, "sandbox.network") {
		t.Errorf("operator widening exec network: %d %s", code, body)
	}
}

// Bad input names the field.
func (c *sandboxCase) badInput(t *testing.T) {
	for field, sb := range map[string]map[string]any{
		"sandbox.mode":                {"mode": "strict"},
		"sandbox.read[0]":             {"read": []string{"relative/dir"}},
		"sandbox.write[0]":            {"write": []string{"/does/not/exist"}},
		"sandbox.limits.processes":    {"limits": map[string]any{"processes": -1}},
		"sandbox.network":             {"network": "wifi"},
		"sandbox.colour":              {"colour": "blue"},
		"sandbox.limits.memory_bytes": {"limits": map[string]any{"memory_bytes": 1}},
	} {
		code, _, body := c.spawn(c.e.token(), map[string]any{"command": "true", "sandbox": sb})
		if code != 400 || !strings.Contains(body, field) {
			t.Errorf("bad sandbox %s: %d %s", field, code, body)
		}
	}

}

// Ordinary programs work inside the sandbox.
func (c *sandboxCase) programsRun(t *testing.T) {
	for name, args := range map[string][]string{
		"python3": {"python3", "-c", "import json, tempfile, os; tempfile.mkstemp(); print(json.dumps({'cwd': os.getcwd() != ''}))"},
		"sh":      {"sh", "-c", "echo hi | tr a-z A-Z; date +%Y >/dev/null; echo ok"},
		"git":     {"sh", "-c", "git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l"},
		"node":    {"node", "-e", "console.log(require('fs').readdirSync('.').length >= 0)"},
	} {
		if _, err := lookPathIn(args[0]); err != nil {
			continue // node is optional
		}
		code, rec, body := c.spawn(c.op, map[string]any{"command": args[0], "args": args[1:]})
		if code != 201 {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		rec = c.e.waitEnded(rec.ID)
		logb, _ := os.ReadFile(filepath.Join(c.e.home, "logs", "agents", rec.ID+".log"))
		if rec.State != oxios.Succeeded {
			t.Errorf("%s in the sandbox: %s %s\n%s", name, rec.State, rec.Reason, logb)
		}
	}

}

// Limits end the agent with a reason that names them.
func (c *sandboxCase) limitsEnd(t *testing.T) {
	var rec oxios.Record
	var code int
	var body string
	if _, err := lookPathIn("python3"); err != nil {
		t.Fatal("python3 is needed in the system directories for the memory and network checks")
	}
	code, rec, body = c.spawn(c.op, map[string]any{"command": "python3", "args": []string{"-c", "x = []\nwhile True: x.append(bytearray(1 << 20))"},
		"sandbox": map[string]any{"limits": map[string]any{"memory_mb": 128}}})
	if code != 201 {
		t.Fatal(code, body)
	}
	if rec = c.e.waitEnded(rec.ID); rec.State != oxios.Failed || rec.Reason != "memory limit 128 MiB reached" {
		t.Errorf("memory hog: %s %q", rec.State, rec.Reason)
	}
	code, rec, body = c.spawn(c.op, map[string]any{"command": "sh", "args": []string{"-c", "while :; do sleep 30 & done"},
		"sandbox": map[string]any{"limits": map[string]any{"processes": 64}}})
	if code != 201 {
		t.Fatal(code, body)
	}
	if rec = c.e.waitEnded(rec.ID); rec.State != oxios.Failed || rec.Reason != "process limit 64 reached" {
		t.Errorf("fork bomb: %s %q", rec.State, rec.Reason)
	}
	code, rec, body = c.spawn(c.op, map[string]any{"command": "sh", "args": []string{"-c", "while :; do :; done"},
		"sandbox": map[string]any{"limits": map[string]any{"cpu_seconds": 1}}})
	if code != 201 {
		t.Fatal(code, body)
	}
	if rec = c.e.waitEnded(rec.ID); rec.State != oxios.Failed || rec.Reason != "CPU time limit reached (1 s)" {
		t.Errorf("CPU spin: %s %q", rec.State, rec.Reason)
	}

}

// network none: a TCP connect to a loopback listener fails.
func (c *sandboxCase) networkNone(t *testing.T) {
	var rec oxios.Record
	var code int
	var body string
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
			c.Write([]byte("REACHED"))
			c.Close()
		}
	}()
	connect := fmt.Sprintf("import socket\ns = socket.create_connection(('127.0.0.1', %d), timeout=2)\nprint(s.recv(10).decode())", ln.Addr().(*net.TCPAddr).Port)
	for _, network := range []string{"none", "any"} {
		code, rec, body = c.spawn(c.op, map[string]any{"command": "python3", "args": []string{"-c", connect}, "sandbox": map[string]any{"network": network}})
		if code != 201 { // any is the default of process agents: not a widening
			t.Fatal(code, body)
		}
		rec = c.e.waitEnded(rec.ID)
		logb, _ := os.ReadFile(filepath.Join(c.e.home, "logs", "agents", rec.ID+".log"))
		if reached := strings.Contains(string(logb), "REACHED"); reached != (network == "any") {
			t.Errorf("network %s: reached=%v (%s %q)\n%s", network, reached, rec.State, rec.Reason, logb)
		}
	}

}

// The CLI's flags narrow the sandbox; agent get shows what it got.
func (c *sandboxCase) cliFlags(t *testing.T) {
	r := c.e.oxios("agent", "spawn", "--network", "none", "--memory-mb", "64", "--max-procs", "32", "--wait", "--", "sh", "-c", "ulimit -n")
	if r.code != 0 {
		t.Fatalf("agent spawn with sandbox flags: %s", r)
	}
	list := c.e.oxios("agent", "list", "-o", "json")
	var recs []oxios.Record
	json.Unmarshal([]byte(list.stdout), &recs)
	got := c.e.oxios("agent", "get", recs[0].ID)
	for _, want := range []string{"enforce, Landlock ABI", "none (by", "memory 64 MiB", "processes 32"} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("agent get lacks %q:\n%s", want, got.stdout)
		}
	}
	if r := c.e.oxios("agent", "spawn", "--memory-mb", "-5", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "sandbox.limits.memory_mb") {
		t.Errorf("a negative limit from the CLI: %s", r)
	}

}

// A viewer sees env names, not values; secret_env values are never shown.
func (c *sandboxCase) secretEnv(t *testing.T) {
	var rec oxios.Record
	var code int
	var body string
	var logb []byte
	os.MkdirAll(filepath.Join(c.e.home, "secrets", "env"), 0o700)
	os.WriteFile(filepath.Join(c.e.home, "secrets", "env", "API_KEY"), []byte("sk-secretenv-0123456789\n"), 0o600)
	secretSpec := map[string]any{"command": "sh", "args": []string{"-c", `test "$(printf %s "$API_KEY" | sha256sum)" = "$0  -" && echo MATCH`, fmt.Sprintf("%x", sha256.Sum256([]byte("sk-secretenv-0123456789")))},
		"env": map[string]string{"MODE": "plain-value"}, "secret_env": []string{"API_KEY"}}
	// Whoever reads an agent's log could read its secrets: giving one is
	// an admin's decision.
	if code, _, body := c.spawn(c.op, secretSpec); code != 403 || !strings.Contains(body, `"field": "secret_env"`) {
		t.Errorf("operator with secret_env: %d %s", code, body)
	}
	code, rec, body = c.spawn(c.e.token(), secretSpec)
	if code != 201 {
		t.Fatal(code, body)
	}
	rec = c.e.waitEnded(rec.ID)
	logb, _ = os.ReadFile(filepath.Join(c.e.home, "logs", "agents", rec.ID+".log"))
	if rec.State != oxios.Succeeded || !strings.Contains(string(logb), "MATCH") {
		t.Fatalf("secret_env: %s %q %s", rec.State, rec.Reason, logb)
	}
	r := c.e.oxios("token", "create", "v", "--role", "viewer")
	viewer := strings.TrimSpace(r.stdout)
	_, asViewer := c.e.get("/api/v1/agents/"+rec.ID, viewer)
	_, asOperator := c.e.get("/api/v1/agents/"+rec.ID, c.op)
	if strings.Contains(asViewer, "plain-value") || !strings.Contains(asViewer, `"MODE"`) || !strings.Contains(asOperator, "plain-value") {
		t.Errorf("env as viewer: %s\nas operator: %s", asViewer, asOperator)
	}
	for _, s := range []string{asViewer, asOperator, c.e.oxios("events", "--since", "0", "-o", "json").stdout} {
		if strings.Contains(s, "sk-secretenv") {
			t.Errorf("ESCAPE: a secret_env value is shown: %s", s)
		}
	}
}

func lookPathIn(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if p := filepath.Join(d, name); sandbox.SystemReadable(p) {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", os.ErrNotExist
}

// On a kernel without Landlock (simulated), enforce mode refuses to start
// agents and says why; best_effort runs them and records what is missing.
func TestSandboxEnforceWithoutLandlock(t *testing.T) {
	e := newEnv(t)
	r := e.run([]string{sandbox.ForceABIEnv + "=0"}, "start", "--listen", e.listen)
	if r.code != 0 {
		t.Fatal(r)
	}
	e.stopAtEnd()
	rec := e.spawnJSON("--", "true")
	rec = e.waitEnded(rec.ID)
	if rec.State != oxios.Failed || !strings.HasPrefix(rec.Reason, "sandbox unavailable: filesystem: Landlock is not available") {
		t.Fatalf("enforce without Landlock: %s %q", rec.State, rec.Reason)
	}
	code, body := e.post("/api/v1/agents", e.token(), map[string]any{"command": "true", "sandbox": map[string]any{"mode": "best_effort"}})
	var got oxios.Record
	json.Unmarshal([]byte(body), &got)
	if code != 201 {
		t.Fatal(code, body)
	}
	got = e.waitEnded(got.ID)
	if got.State != oxios.Succeeded || got.Sandbox == nil || got.Sandbox.Landlock != 0 || !strings.Contains(strings.Join(got.Sandbox.Unenforced, ";"), "Landlock is not available") {
		t.Fatalf("best effort without Landlock: %s %q %+v", got.State, got.Reason, got.Sandbox)
	}
}

func sandboxABI() int { return sandbox.Probe().Landlock }

// An llm agent whose workspace was swapped for a link (by a program of
// its own, or of another agent that can write there) does not start
// again: following the link would hand the file tools and the sandbox
// the place it points to.
func TestSandboxWorkspaceSwappedForALink(t *testing.T) {
	needLandlock(t)
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey, agenttest.Reply{Text: "done"}, agenttest.Reply{Text: "done"})
	e.startWithModel(llm)
	e.stopAtEnd()
	d := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(d, 0o700)
	code, body := e.post("/api/v1/agents", e.token(), map[string]any{"kind": "llm", "goal": "x", "dir": d})
	var rec oxios.Record
	json.Unmarshal([]byte(body), &rec)
	if code != 201 {
		t.Fatal(code, body)
	}
	if rec = e.waitEnded(rec.ID); rec.State != oxios.Succeeded {
		t.Fatalf("first run: %s %q", rec.State, rec.Reason)
	}
	os.Rename(d, d+".old")
	os.Symlink(e.home, d)
	if r := e.oxios("agent", "restart", rec.ID); r.code != 0 {
		t.Fatal(r)
	}
	rec = e.waitAgent(rec.ID, func(r oxios.Record) bool {
		return r.State.Terminal() && r.Restarts == 0 && r.Reason != "completed"
	})
	if rec.State != oxios.Failed || !strings.Contains(rec.Reason, "is now reached through a symlink") {
		t.Fatalf("restart through a swapped workspace: %s %q", rec.State, rec.Reason)
	}
	if llm.Count() != 1 {
		t.Errorf("the model was called %d times; the swapped run must not start", llm.Count())
	}
}
