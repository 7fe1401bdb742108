package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/doctor"
)

// oxios doctor: findings with fixes, exit 1 when something needs fixing.
func TestDoctor(t *testing.T) {
	e := newEnv(t)
	findings := func(wantCode int) map[string][]doctor.Finding {
		t.Helper()
		// Whatever keys this shell has: the findings must not depend on it.
		r := e.run([]string{"OPENAI_API_KEY=", "ANTHROPIC_API_KEY="}, "doctor", "-o", "json")
		var fs []doctor.Finding
		if r.code != wantCode || json.Unmarshal([]byte(r.stdout), &fs) != nil {
			t.Fatalf("doctor (want exit %d): %s", wantCode, r)
		}
		by := map[string][]doctor.Finding{}
		for _, f := range fs {
			by[f.Check] = append(by[f.Check], f)
		}
		return by
	}
	has := func(fs []doctor.Finding, status, detail, fix string) bool {
		for _, f := range fs {
			if f.Status == status && strings.Contains(f.Detail, detail) && strings.Contains(f.Fix, fix) {
				return true
			}
		}
		return false
	}
	r := e.run([]string{"OPENAI_API_KEY=", "ANTHROPIC_API_KEY="}, "start", "--listen", e.listen)
	if r.code != 0 {
		t.Fatal(r)
	}
	pid := pidFrom(t, r.stdout)
	e.stopAtEnd()
	by := findings(0)
	if !has(by["daemon"], "ok", "running", "") || !has(by["storage"], "ok", "every part is ready", "") ||
		!has(by["providers"], "warn", "openai: no API key", "OPENAI_API_KEY") ||
		!(has(by["disk"], "ok", "free of", "") || has(by["disk"], "warn", "free of", "")) {
		t.Fatalf("a healthy install: %+v", by)
	}
	tok := filepath.Join(e.home, "secrets", "admin.token")
	os.Chmod(tok, 0o644)
	if by := findings(1); !has(by["perms"], "fail", "admin.token is 0644", "chmod 600 "+tok) {
		t.Fatalf("a readable token: %+v", by["perms"])
	}
	os.Chmod(tok, 0o600)
	if r := e.run([]string{"OPENAI_API_KEY="}, "doctor"); r.code != 0 || !strings.Contains(r.stdout, "✓ daemon") {
		t.Fatalf("table output: %s", r)
	}

	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[scheduler]\nmax_running = -1\n"), 0o600)
	by = findings(1)
	if !has(by["daemon"], "fail", "stale PID file", "oxios start") || !has(by["config"], "fail", "scheduler.max_running", "config validate") {
		t.Fatalf("a dead daemon and a bad config: %+v", by)
	}
}

// oxios doctor reports the Landlock ABI, network namespaces, limits,
// cgroups and the default sandbox; without Landlock in enforce mode it
// fails and says how to fix it.
func TestDoctorSandbox(t *testing.T) {
	e := newEnv(t)
	r := e.oxios("doctor", "-o", "json")
	var fs []doctor.Finding
	json.Unmarshal([]byte(r.stdout), &fs)
	var details []string
	for _, f := range fs {
		if f.Check == "sandbox" {
			details = append(details, f.Status+" "+f.Detail)
		}
	}
	all := strings.Join(details, "\n")
	for _, want := range []string{"network namespaces", "cgroup v2", "default: mode enforce; network any for process agents, none for exec"} {
		if !strings.Contains(all, want) {
			t.Errorf("doctor's sandbox findings lack %q:\n%s", want, all)
		}
	}
	if abi := sandboxABI(); abi > 0 && !strings.Contains(all, "ok Landlock ABI") {
		t.Errorf("doctor does not report Landlock ABI %d:\n%s", abi, all)
	}
	r = e.run([]string{"OXIOS_TEST_LANDLOCK_ABI=0"}, "doctor")
	if r.code != 1 || !strings.Contains(r.stdout, `no agent will start`) || !strings.Contains(r.stdout, `best_effort`) {
		t.Errorf("doctor without Landlock: %s", r)
	}
}
