package tools

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func env(t *testing.T, p Policy) (*Env, string) {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	g, err := NewGate(ws, p)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Gate: g, AgentID: "a1"}, ws
}

func call(t *testing.T, e *Env, name string, args any) (string, error) {
	t.Helper()
	b, _ := json.Marshal(args)
	return Call(context.Background(), e, name, b)
}

func denied(err error, rule string) bool {
	var d *Denied
	return errors.As(err, &d) && d.Rule == rule
}

func TestFileTools(t *testing.T) {
	e, ws := env(t, Policy{})
	if _, err := call(t, e, "write_file", map[string]string{"path": "dir/a.txt", "content": "one two two"}); err != nil {
		t.Fatal(err)
	}
	if out, err := call(t, e, "read_file", map[string]string{"path": "dir/a.txt"}); err != nil || out != "one two two" {
		t.Fatalf("read: %q %v", out, err)
	}
	if _, err := call(t, e, "edit_file", map[string]string{"path": "dir/a.txt", "old": "two", "new": "2"}); err == nil || !strings.Contains(err.Error(), "occurs 2 times") {
		t.Fatalf("ambiguous edit: %v", err)
	}
	if _, err := call(t, e, "edit_file", map[string]string{"path": "dir/a.txt", "old": "three", "new": "3"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing edit: %v", err)
	}
	if _, err := call(t, e, "edit_file", map[string]string{"path": "dir/a.txt", "old": "one", "new": "1"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "dir/a.txt")); string(b) != "1 two two" {
		t.Fatalf("after edit: %q", b)
	}
	if out, _ := call(t, e, "list_dir", map[string]string{}); out != "dir/\n" {
		t.Fatalf("list_dir: %q", out)
	}
	if out, _ := call(t, e, "glob", map[string]string{"pattern": "**/*.txt"}); out != "dir/a.txt" {
		t.Fatalf("glob: %q", out)
	}
	if out, _ := call(t, e, "grep", map[string]string{"pattern": "tw+o"}); out != "dir/a.txt:1: 1 two two\n" {
		t.Fatalf("grep: %q", out)
	}
}

// Every way out of the workspace is denied: .., absolute paths, and
// symlinks (existing or dangling) that point outside.
func TestPathEscapesDenied(t *testing.T) {
	e, ws := env(t, Policy{})
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	os.Symlink(outside, filepath.Join(ws, "link"))
	os.Symlink(filepath.Join(outside, "new"), filepath.Join(ws, "dangling"))
	for _, c := range []struct{ tool, path string }{
		{"read_file", "../../etc/passwd"},
		{"read_file", "/etc/passwd"},
		{"read_file", filepath.Join(outside, "secret")},
		{"read_file", "link/secret"},
		{"write_file", "link/new"},
		{"write_file", "dangling"},
		{"list_dir", ".."},
		{"grep", "link"},
	} {
		_, err := call(t, e, c.tool, map[string]string{"path": c.path, "content": "x", "pattern": "s"})
		if !denied(err, "paths") {
			t.Errorf("%s %s: %v, want a path denial", c.tool, c.path, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Fatal("a write through a dangling symlink landed outside the workspace")
	}
	// A deny rule inside the workspace, and an allow rule outside it.
	e2, _ := env(t, Policy{Paths: PathPolicy{Allow: []string{"./**", outside + "/**"}, Deny: []string{"./private/**"}}})
	if _, err := call(t, e2, "read_file", map[string]string{"path": filepath.Join(outside, "secret")}); err != nil {
		t.Fatalf("allowed outside path: %v", err)
	}
	if _, err := call(t, e2, "write_file", map[string]string{"path": "private/x", "content": "x"}); !denied(err, "paths") {
		t.Fatalf("denied path: %v", err)
	}
}

func TestExec(t *testing.T) {
	e, _ := env(t, Policy{})
	if _, err := call(t, e, "exec", map[string]any{"command": "echo", "args": []string{"hi"}}); !denied(err, "exec") {
		t.Fatalf("exec with an empty allowlist: %v", err)
	}
	yes := true
	e, ws := env(t, Policy{Exec: ExecPolicy{Allow: []string{"echo", "sh"}, Env: []string{"GREETING"}, Timeout: "300ms", Shell: &yes}})
	t.Setenv("SECRET_TOKEN", "leak")
	out, err := call(t, e, "exec", map[string]any{"command": "sh", "args": []string{"-c", "echo $GREETING $SECRET_TOKEN; pwd; echo id=$OXIOS_AGENT_ID; exit 3"}, "env": map[string]string{"GREETING": "hello"}})
	if err != nil || !strings.HasPrefix(out, "exit code 3\n") || !strings.Contains(out, "hello\n") || strings.Contains(out, "leak") || !strings.Contains(out, ws) || !strings.Contains(out, "id=a1") {
		t.Fatalf("exec: %q %v", out, err)
	}
	if _, err := call(t, e, "exec", map[string]any{"command": "cat"}); !denied(err, "exec") {
		t.Fatalf("exec of a program not allowed: %v", err)
	}
	if _, err := call(t, e, "exec", map[string]any{"command": "echo", "env": map[string]string{"SECRET_TOKEN": "x"}}); !denied(err, "exec") {
		t.Fatalf("exec with an env var not allowed: %v", err)
	}
	// The timeout kills the whole group, grandchildren included.
	start := time.Now()
	out, err = call(t, e, "exec", map[string]any{"command": "sh", "args": []string{"-c", "sleep 100 & echo $! > gc.pid; wait"}})
	if err != nil || !strings.HasPrefix(out, "killed after the 300ms timeout") || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout: %q %v after %s", out, err, time.Since(start))
	}
	b, _ := os.ReadFile(filepath.Join(ws, "gc.pid"))
	gc, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(gc) + "/stat")
		if gc == 0 || err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived the timeout", gc)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if gc == 0 {
		t.Fatal("no grandchild pid")
	}
	out, err = call(t, e, "exec", map[string]any{"command": "echo $GREETING", "shell": true})
	if err != nil || !strings.HasPrefix(out, "exit code 0") {
		t.Fatalf("shell mode: %q %v", out, err)
	}
}

func TestHTTPFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
			return
		}
		w.Write([]byte("pong"))
	}))
	defer srv.Close()
	e, _ := env(t, Policy{})
	if _, err := call(t, e, "http_fetch", map[string]string{"url": srv.URL}); !denied(err, "network") {
		t.Fatalf("network off by default: %v", err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	e, _ = env(t, Policy{Network: NetworkPolicy{Allow: []string{host}}})
	if out, err := call(t, e, "http_fetch", map[string]string{"url": srv.URL}); err != nil || !strings.HasPrefix(out, "HTTP 200") || !strings.HasSuffix(out, "pong") {
		t.Fatalf("fetch: %q %v", out, err)
	}
	if _, err := call(t, e, "http_fetch", map[string]string{"url": srv.URL + "/away"}); !denied(err, "network") {
		t.Fatalf("redirect to a host not allowed: %v", err)
	}
	if _, err := call(t, e, "http_fetch", map[string]string{"url": "file:///etc/passwd"}); !denied(err, "network") {
		t.Fatalf("file URL: %v", err)
	}
}

func TestAskIsDeniedUntilApprovalsExist(t *testing.T) {
	e, _ := env(t, Policy{Ask: []string{"write_file"}})
	if _, err := call(t, e, "write_file", map[string]string{"path": "a", "content": "x"}); !denied(err, "ask") {
		t.Fatalf("ask: %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, c := range []struct {
		p     Policy
		field string
	}{
		{Policy{Paths: PathPolicy{Allow: []string{"[bad"}}}, "policy.paths.allow[0]"},
		{Policy{Exec: ExecPolicy{Allow: []string{"bin/x"}}}, "policy.exec.allow[0]"},
		{Policy{Exec: ExecPolicy{Timeout: "forever"}}, "policy.exec.timeout"},
		{Policy{Network: NetworkPolicy{Allow: []string{"http://x"}}}, "policy.network.allow[0]"},
		{Policy{Ask: []string{"rm_rf"}}, "policy.ask[0]"},
	} {
		var inv *InvalidError
		if err := ValidatePolicy(c.p, "policy."); !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("%+v: %v, want %s", c.p, err, c.field)
		}
	}
}
