package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// A backup taken while the daemon runs, restored into the stopped daemon
// after changes: agents, state, events, cron jobs and the audit trail come
// back identical, and the audit chain verifies. Restore refuses a running
// daemon and a corrupt or foreign archive, changing nothing.
func TestBackupRestore(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	done := e.spawnJSON("--name", "finished", "--", "sh", "-c", "echo hi")
	e.waitAgent(done.ID, func(r oxios.Record) bool { return r.State.Terminal() })
	for _, args := range [][]string{
		{"state", "put", "app", "config", `{"mode": "fast"}`},
		{"cron", "add", "nightly", "--schedule", "0 3 * * *", "--", "true"},
		{"budget", "set", "global", "--tokens", "1000"},
	} {
		if r := e.oxios(args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
	}
	snapshot := func() map[string]string { t.Helper(); return backupSnapshot(t, e) }
	file := filepath.Join(t.TempDir(), "oxios.tar.gz")
	r := e.oxios("backup", file)
	if r.code != 0 || !strings.Contains(r.stdout, "backup written to "+file) {
		t.Fatalf("backup: %s", r)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the archive holds secrets: %v %v", fi.Mode(), err)
	}
	before := snapshot()
	auditBefore := e.oxios("audit", "list", "-o", "json").stdout

	// Changes after the backup, which the restore undoes.
	for _, args := range [][]string{
		{"state", "delete", "app", "config"},
		{"cron", "rm", "nightly"},
		{"agent", "rm", done.ID},
	} {
		if r := e.oxios(args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
	}
	if r := e.oxios("restore", file); r.code != 1 || !strings.Contains(r.stderr, "the daemon is running") {
		t.Fatalf("restore while running: %s", r)
	}
	if r := e.oxios("stop"); r.code != 0 {
		t.Fatal(r)
	}

	refusedRestores(t, e, file)

	r = e.oxios("restore", file)
	if r.code != 0 || !strings.Contains(r.stdout, "restored ") || !strings.Contains(r.stdout, "data.before-restore-") {
		t.Fatalf("restore: %s", r)
	}
	e.start()
	after := snapshot()
	for name := range before {
		if name == "events" {
			// The restored log is the backed-up one: the events after the
			// backup (the deletes) are gone, the rest are identical.
			if !strings.HasPrefix(strings.TrimSpace(after[name]), strings.TrimSuffix(strings.TrimSpace(before[name]), "]")) {
				t.Errorf("events differ after the restore")
			}
			continue
		}
		if after[name] != before[name] {
			t.Errorf("%s differs after the restore:\nbefore %s\nafter  %s", name, before[name], after[name])
		}
	}
	if r := e.oxios("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify after the restore: %s", r)
	}
	var entries []map[string]any
	json.Unmarshal([]byte(e.oxios("audit", "list", "-o", "json").stdout), &entries)
	var prev []map[string]any
	json.Unmarshal([]byte(auditBefore), &prev)
	if len(entries) <= len(prev) || entries[len(prev)]["action"] != "backup.restored" {
		t.Fatalf("the restored trail: %d entries before, %d after", len(prev), len(entries))
	}
}

func listDir(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString(p)
			b.WriteString("\n")
		}
		return nil
	})
	return b.String()
}

// What killed backups leave is cleaned up: the daemon's snapshot files in
// the home at boot, the CLI's partial archive at the next backup to the
// same file; and an existing FILE is kept without --force (issue 15.7).
func TestBackupLeftovers(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(e.home, 0o700)
	snap := filepath.Join(e.home, ".backup-123456")
	os.WriteFile(snap, []byte("secret snapshot"), 0o600)
	e.start()
	e.stopAtEnd()
	if _, err := os.Stat(snap); err == nil {
		t.Error("a killed backup's snapshot file survived the boot")
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "b.tar.gz")
	partial := filepath.Join(dir, ".b.tar.gz.partial-999")
	os.WriteFile(partial, []byte("secrets"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(partial, old, old)
	if r := e.oxios("backup", dst); r.code != 0 {
		t.Fatal(r)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("a killed backup's partial archive survived the next backup")
	}
	if r := e.oxios("backup", dst); r.code != 2 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("backup over an existing file: %s", r)
	}
	if r := e.oxios("backup", "--force", dst); r.code != 0 {
		t.Errorf("backup --force: %s", r)
	}
}

// backupSnapshot is what a restore brings back, as the CLI shows it.
func backupSnapshot(t *testing.T, e *env) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, args := range map[string][]string{
		"agents": {"agent", "list", "-o", "json"},
		"state":  {"state", "get", "app", "config", "-o", "json"},
		"events": {"events", "--since", "0", "-o", "json"},
		"cron":   {"cron", "get", "nightly", "-o", "json"},
		"budget": {"budget", "get", "global", "-o", "json"},
	} {
		r := e.oxios(args...)
		if r.code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
		out[name] = r.stdout
	}
	return out
}

// refusedRestores restores a corrupt, a foreign and a missing archive
// into the stopped daemon of e: each is a usage error that changes
// nothing.
func refusedRestores(t *testing.T, e *env, file string) {
	t.Helper()
	dataBefore := listDir(t, filepath.Join(e.home, "data"))
	corrupt := filepath.Join(t.TempDir(), "corrupt.tar.gz")
	b, _ := os.ReadFile(file)
	os.WriteFile(corrupt, b[:len(b)/2], 0o600)
	foreign := filepath.Join(t.TempDir(), "foreign.tar.gz")
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write([]byte("just some gzip'd bytes"))
	gz.Close()
	os.WriteFile(foreign, buf.Bytes(), 0o600)
	for f, msg := range map[string]string{corrupt: "corrupt or truncated", foreign: "is not an oxios backup", file + ".nope": "no such file"} {
		r := e.oxios("restore", f)
		if r.code != 2 || !strings.Contains(r.stderr, msg) {
			t.Fatalf("restore %s: %s", f, r)
		}
	}
	if after := listDir(t, filepath.Join(e.home, "data")); after != dataBefore {
		t.Fatal("a refused restore changed the data directory")
	}

}
