package doctor

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/config"
)

func find(fs []Finding, check, status string) (Finding, bool) {
	for _, f := range fs {
		if f.Check == check && f.Status == status {
			return f, true
		}
	}
	return Finding{}, false
}

func noDaemon(bool) (*client.Client, error) { return nil, errors.New("no daemon in this test") }

// A home others can read, a config that does not load and a listen
// address another program holds are each a failure that says its fix; no
// daemon is needed to find them.
func TestFindings(t *testing.T) {
	dir := t.TempDir()
	h := config.Home{Dir: dir}
	if err := os.MkdirAll(h.SecretsDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.AdminTokenPath(), []byte("secret-token-value"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config.DefaultConfig()
	cfg.API.Listen = ln.Addr().String()
	fs := Run(Options{Home: h, Config: cfg, ConfigPath: filepath.Join(dir, "config.toml"), ConfigErr: errors.New("oxios: config.toml:3: daemon.bogus: unknown key"), Client: noDaemon})

	if f, ok := find(fs, "config", "fail"); !ok || !strings.Contains(f.Detail, "daemon.bogus") || strings.HasPrefix(f.Detail, "oxios:") {
		t.Errorf("config: %+v", fs)
	}
	if f, ok := find(fs, "perms", "fail"); !ok || f.Fix != "chmod 700 "+h.SecretsDir() {
		t.Errorf("secrets dir: %+v", fs)
	}
	if f, ok := find(fs, "perms", "fail"); ok {
		var n int
		for _, g := range fs {
			if g.Check == "perms" && g.Status == "fail" && strings.HasPrefix(g.Fix, "chmod 600 ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("admin token: %+v (%+v)", fs, f)
		}
	}
	if _, ok := find(fs, "perms", "ok"); !ok {
		t.Errorf("the home itself (0700) is not ok: %+v", fs)
	}
	if f, ok := find(fs, "listen", "fail"); !ok || !strings.Contains(f.Fix, "ss -ltnp") {
		t.Errorf("listen: %+v", fs)
	}
	if f, ok := find(fs, "daemon", "ok"); !ok || f.Detail != "stopped" {
		t.Errorf("daemon: %+v", fs)
	}
	if _, ok := find(fs, "storage", "fail"); ok {
		t.Errorf("the storage of a stopped daemon was checked: %+v", fs)
	}
	if check, failed := Failed(fs); !failed || check != "config" {
		t.Errorf("Failed = %q, %v", check, failed)
	}
	for _, f := range fs {
		if strings.Contains(f.Detail+f.Fix, "secret-token-value") {
			t.Errorf("a finding shows the token: %+v", f)
		}
	}
}

// A clean home passes.
func TestCleanHome(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := config.Home{Dir: dir}
	cfg := config.DefaultConfig()
	cfg.API.Listen = "127.0.0.1:0"
	fs := Run(Options{Home: h, Config: cfg, ConfigPath: filepath.Join(dir, "config.toml"), Client: noDaemon})
	for _, check := range []string{"config", "perms", "daemon", "listen"} {
		if _, bad := find(fs, check, "fail"); bad {
			t.Errorf("%s fails on a clean home: %+v", check, fs)
		}
	}
	if f, ok := find(fs, "config", "ok"); !ok || !strings.Contains(f.Detail, "the defaults apply") {
		t.Errorf("config: %+v", fs)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{512 << 10: "512 KiB", 300 << 20: "300 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
