package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token made with the CLI works with its role's rights, no more, until
// it is revoked; its creation is audited.
func TestTokenCLI(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	r := e.oxios("token", "create", "ci", "--role", "operator", "--expires", "1h")
	secret := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(secret, "oxs_") || !strings.Contains(r.stderr, "not shown again") {
		t.Fatalf("create: %s", r)
	}
	as := []string{"OXIOS_TOKEN=" + secret}
	if r := e.run(as, "agent", "list"); r.code != 0 {
		t.Fatalf("operator lists agents: %s", r)
	}
	if r := e.run(as, "token", "list"); r.code != 1 || !strings.Contains(r.stderr, "needs the admin role") {
		t.Fatalf("operator lists tokens: %s", r)
	}
	if r := e.oxios("token", "list"); r.code != 0 || !strings.Contains(r.stdout, "ci") || strings.Contains(r.stdout, secret) {
		t.Fatalf("list: %s", r)
	}
	if r := e.oxios("token", "create", "x", "--role", "root"); r.code != 2 || !strings.Contains(r.stderr, "role: must be admin, operator or viewer") {
		t.Fatalf("bad role: %s", r)
	}
	if r := e.oxios("token", "revoke", "ci"); r.code != 0 {
		t.Fatalf("revoke: %s", r)
	}
	if r := e.run(as, "agent", "list"); r.code != 1 || !strings.Contains(r.stderr, "invalid token") {
		t.Fatalf("revoked token: %s", r)
	}
	if r := e.oxios("audit", "list", "--action", "token.*"); r.code != 0 || !strings.Contains(r.stdout, "token.create") || !strings.Contains(r.stdout, "token.revoke") {
		t.Fatalf("audit: %s", r)
	}
}

// A change of the config file between boots is audited (config.changed,
// with the file's hash), and an unchanged one is not.
func TestConfigChangeAudited(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	count := func() int {
		r := e.oxios("audit", "list", "--action", "config.changed", "-o", "json")
		return strings.Count(r.stdout, `"action": "config.changed"`)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d config.changed entries after the first boot", n)
	}
	e.oxios("stop")
	e.start()
	if n := count(); n != 1 {
		t.Fatalf("an unchanged config was audited again: %d", n)
	}
	e.oxios("stop")
	cfg := filepath.Join(e.home, "config.toml")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), `level = "info"`, `level = "debug"`, 1)), 0o600)
	e.start()
	r := e.oxios("audit", "list", "--action", "config.changed", "-o", "json")
	if n := count(); n != 2 || !strings.Contains(r.stdout, "previous_sha256") {
		t.Fatalf("after editing the config: %d entries\n%s", n, r.stdout)
	}
}
