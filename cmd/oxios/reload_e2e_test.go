package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/scheduler"
)

// oxios reload and SIGHUP apply scheduler limits, the log level and
// retention at once and name what needs a restart; an invalid file is
// refused with the key and the running configuration stays.
func TestReload(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(e.home, 0o700)
	cfg := filepath.Join(e.home, "config.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[scheduler]\nmax_running = 10\n")
	pid := e.start()
	e.stopAtEnd()
	limits := func() scheduler.Limits {
		t.Helper()
		// Over HTTP: the CLI itself would refuse the invalid file below.
		code, body := e.get("/api/v1/scheduler", e.token())
		var snap oxios.SchedulerSnapshot
		if code != 200 || json.Unmarshal([]byte(body), &snap) != nil {
			t.Fatalf("scheduler: %d %s", code, body)
		}
		return snap.Limits
	}
	if l := limits(); l.MaxRunning != 10 {
		t.Fatalf("%+v", l)
	}

	write("[scheduler]\nmax_running = 3\nspawns_per_minute = 100\n[log]\nlevel = \"debug\"\n[agents]\nretain = 5\n[api]\nlisten = \"127.0.0.1:1\"\n")
	r := e.oxios("reload")
	if r.code != 0 || !strings.Contains(r.stdout, "applied: agents.retain, log.level, scheduler.max_running, scheduler.spawns_per_minute") ||
		!strings.Contains(r.stdout, "needs a restart (oxios restart): api.listen") {
		t.Fatalf("reload: %s", r)
	}
	if l := limits(); l.MaxRunning != 3 || l.SpawnsPerMinute != 100 {
		t.Fatalf("after reload: %+v", l)
	}
	// A second reload applies nothing new, and still names what waits for
	// a restart.
	if r := e.oxios("reload", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"applied": []`) || !strings.Contains(r.stdout, `"api.listen"`) {
		t.Fatalf("a second reload: %s", r)
	}

	write("[scheduler]\nmax_running = -4\n")
	r = e.oxios("reload")
	if r.code != 2 || !strings.Contains(r.stderr, "scheduler.max_running") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("invalid reload: %s", r)
	}
	if l := limits(); l.MaxRunning != 3 {
		t.Fatalf("an invalid file changed the running config: %+v", l)
	}

	// SIGHUP does the same (and does not end the daemon).
	write("[scheduler]\nmax_running = 7\n")
	syscall.Kill(pid, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for limits().MaxRunning != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload: %+v", limits())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := e.oxios("audit", "list", "--action", "config.reloaded"); r.code != 0 || strings.Count(r.stdout, "config.reloaded") < 3 {
		t.Fatalf("audit: %s", r)
	}
	logb, _ := os.ReadFile(filepath.Join(e.home, "logs", "oxios.log"))
	if !strings.Contains(string(logb), `level=DEBUG msg="settings in effect"`) {
		t.Fatal("log.level = debug was not applied")
	}
}
