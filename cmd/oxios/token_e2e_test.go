package main

import (
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
