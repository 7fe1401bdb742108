package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// service install --dry-run shows the unit and where it goes and writes
// nothing; a unit path that cannot be written is a clear error and changes
// nothing.
func TestServiceInstall(t *testing.T) {
	e := newEnv(t)
	xdg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + xdg}
	r := e.run(env, "service", "install", "--dry-run")
	unit := filepath.Join(xdg, "systemd", "user", "oxios.service")
	if r.code != 0 || !strings.Contains(r.stderr, "would write "+unit) ||
		!strings.Contains(r.stdout, "ExecStart="+binary+" start --foreground --config "+filepath.Join(e.home, "config.toml")) ||
		!strings.Contains(r.stdout, "Type=notify") || !strings.Contains(r.stdout, "Restart=on-failure") ||
		!strings.Contains(r.stderr, "would run: systemctl --user enable --now oxios.service") {
		t.Fatalf("dry run: %s", r)
	}
	if entries, _ := os.ReadDir(xdg); len(entries) != 0 {
		t.Fatalf("a dry run wrote %v", entries)
	}
	r = e.run(env, "service", "install", "--system", "--run-as", "nobody", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "User=nobody") || !strings.Contains(r.stdout, "ProtectSystem=strict") ||
		!strings.Contains(r.stdout, "ReadWritePaths="+e.home) || !strings.Contains(r.stderr, "/etc/systemd/system/oxios.service") {
		t.Fatalf("system dry run: %s", r)
	}

	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, []byte("x"), 0o600)
	r = e.run([]string{"XDG_CONFIG_HOME=" + blocker}, "service", "install")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot write "+blocker+"/systemd/user/oxios.service") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Fatalf("unwritable path: %s", r)
	}
	if r := e.run(env, "service", "uninstall"); r.code != 0 || !strings.Contains(r.stderr, "not installed") {
		t.Fatalf("uninstall of nothing: %s", r)
	}
	if r := e.oxios("service", "install", "--user", "--system"); r.code != 2 {
		t.Fatalf("--user with --system: %s", r)
	}
}
