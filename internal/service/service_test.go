package service

import (
	"encoding/xml"
	"flag"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n%s", name, got)
	}
}

var ann = Options{Binary: "/usr/local/bin/oxios", Home: "/home/ann/.oxios", Config: "/home/ann/.oxios/config.toml", StopTimeoutSec: 20}

func TestGoldenFiles(t *testing.T) {
	user := ann
	u, err := Unit(user)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "oxios-user.service", u)
	sys := ann
	sys.System, sys.User, sys.SystemdVersion = true, "ann", 255
	u, err = Unit(sys)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "oxios-system.service", u)
	p, err := Plist(ann)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "io.oxios.daemon.plist", p)
}

// Paths systemd would misread are quoted and escaped by its rules; those
// it cannot express are refused.
func TestEscaping(t *testing.T) {
	o := Options{Binary: "/opt/my apps/oxios", Home: `/srv/100% "agents"`, Config: "/srv/cfg$HOME.toml", StopTimeoutSec: 5}
	u, err := Unit(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ExecStart="/opt/my apps/oxios" start --foreground --config /srv/cfg$$HOME.toml`,
		`Environment="OXIOS_HOME=/srv/100%% \"agents\""`,
	} {
		if !strings.Contains(u, want) {
			t.Errorf("no %s in\n%s", want, u)
		}
	}
	p, err := Plist(Options{Binary: "/opt/a&b/oxios", Home: "/srv/<home>", Config: "/srv/c.toml"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p, "<string>/opt/a&amp;b/oxios</string>") || !strings.Contains(p, "/srv/&lt;home&gt;/logs/oxios.log") {
		t.Errorf("plist not escaped:\n%s", p)
	}
	for _, bad := range []Options{
		{Binary: "oxios", Home: "/h", Config: "/h/c"},
		{Binary: "/b", Home: "/h\n[Service]", Config: "/h/c"},
		{Binary: "/b", Home: "/h", Config: "/h/c", System: true},
	} {
		if _, err := Unit(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The plist is well-formed XML with the keys launchd needs.
func TestPlistParses(t *testing.T) {
	p, err := Plist(Options{Binary: "/opt/a&b/oxios", Home: "/Users/ann/.oxios", Config: "/Users/ann/.oxios/config.toml", System: true, User: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(p))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	var keys []string
	inKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not XML: %v\n%s", err, p)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			inKey = v.Name.Local == "key"
		case xml.CharData:
			if inKey {
				keys = append(keys, string(v))
			}
		case xml.EndElement:
			inKey = false
		}
	}
	for _, k := range []string{"Label", "ProgramArguments", "RunAtLoad", "KeepAlive", "StandardOutPath", "StandardErrorPath", "UserName"} {
		if !strings.Contains(","+strings.Join(keys, ",")+",", ","+k+",") {
			t.Errorf("no %s key in %v", k, keys)
		}
	}
}

// The units pass systemd-analyze verify where it is installed.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := os.Executable()
	home := t.TempDir()
	for _, o := range []Options{
		{Binary: bin, Home: home, Config: filepath.Join(home, "config.toml")},
		{Binary: bin, Home: home, Config: filepath.Join(home, "config.toml"), System: true, User: me.Username},
	} {
		u, err := Unit(o)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, UnitName)
		os.WriteFile(path, []byte(u), 0o644)
		args := []string{"verify", "--man=no"}
		if !o.System {
			args = append(args, "--user")
		}
		cmd := exec.Command(sa, append(args, path)...)
		// A user manager needs a runtime directory (none in a container).
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		// Lines about the host (no running systemd in a container) are not
		// about the unit.
		var problems []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && strings.Contains(l, UnitName) {
				problems = append(problems, l)
			}
		}
		if err != nil || len(problems) > 0 {
			t.Errorf("systemd-analyze verify (system %v): %v\n%s\n%s", o.System, err, out, u)
		}
	}
}

// A user's unit goes under XDG_CONFIG_HOME and is managed with --user; a
// system-wide one goes to /etc/systemd/system.
func TestNewTarget(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("systemd paths")
	}
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	o := Options{Binary: "/usr/local/bin/oxios", Home: "/home/ada/.oxios", Config: "/home/ada/.oxios/config.toml", SystemdVersion: 255, StopTimeoutSec: 40}
	u, err := NewTarget(o)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != filepath.Join(xdg, "systemd", "user", UnitName) || u.System || u.Launchd || !strings.Contains(u.Content, "ExecStart=/usr/local/bin/oxios") {
		t.Fatalf("user target: %+v", u)
	}
	if got := strings.Join(u.Manage("enable", "--now", UnitName), " "); got != "systemctl --user enable --now oxios.service" {
		t.Fatalf("user manage: %s", got)
	}
	o.System, o.User = true, "ada"
	s, err := NewTarget(o)
	if err != nil {
		t.Fatal(err)
	}
	if s.Path != "/etc/systemd/system/oxios.service" || !s.System || !strings.Contains(s.Content, "User=ada") {
		t.Fatalf("system target: %+v", s)
	}
	if got := strings.Join(s.Manage("daemon-reload"), " "); got != "systemctl daemon-reload" {
		t.Fatalf("system manage: %s", got)
	}
	if RunAs("bob") != "bob" {
		t.Fatal("RunAs ignores its flag")
	}
	t.Setenv("SUDO_USER", "carol")
	if RunAs("") != "carol" {
		t.Fatal("RunAs ignores SUDO_USER")
	}
}
