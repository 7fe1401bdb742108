package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTemplateParsesToDefaults(t *testing.T) {
	cfg, err := Parse("config.toml", []byte(Template))
	if err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("template differs from DefaultConfig:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestTemplateMentionsEveryKey(t *testing.T) {
	for key := range hints {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(Template, "\n"+leaf+" = ") {
			t.Errorf("template has no line for %s", key)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Node = "n1"
	cfg.Daemon.StopTimeout = Duration{90 * time.Second}
	cfg.Log.Format = "json"
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("shown.toml", b)
	if err != nil {
		t.Fatalf("config show output does not parse: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, cfg)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, file string
		line       int
		key        string
		msg        string
	}{
		{"unknown key", "[daemon]\n\nbogus = 1\n", 3, "daemon.bogus", "unknown key"},
		{"unknown table", "[nope]\nx = 1\n", 1, "nope", "unknown key"},
		{"duration typo", "[daemon]\nstop_timeout = \"10x\"\n", 2, "daemon.stop_timeout", "duration string"},
		{"duration as number", "[daemon]\nstop_timeout = 10\n", 2, "daemon.stop_timeout", "duration string"},
		{"negative duration", "[daemon]\nstop_timeout = \"-1s\"\n", 2, "daemon.stop_timeout", "between"},
		{"int as string", "[log]\nmax_files = \"5\"\n", 2, "log.max_files", "whole number"},
		{"bad level", "[log]\nlevel = \"loud\"\n", 2, "log.level", "debug, info, warn, error"},
		{"bad format", "[log]\nformat = \"xml\"\n", 2, "log.format", "text or json"},
		{"size zero", "[log]\nmax_size_mb = 0\n", 2, "log.max_size_mb", "from 1 to 10240"},
		{"listen without port", "[api]\nlisten = \"127.0.0.1\"\n", 2, "api.listen", "host:port"},
		{"listen bad port", "[api]\nlisten = \"127.0.0.1:99999\"\n", 2, "api.listen", "1 to 65535"},
		{"listen hostname", "[api]\nlisten = \"example.com:80\"\n", 2, "api.listen", "IP address or localhost"},
		{"bad node", "node = \"a b\"\n", 1, "node", "letters, digits"},
		{"syntax", "[daemon\n", 1, "", "invalid TOML"},
		{"peer not host:port", "[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"10.0.0.2\"]\n", 3, "cluster.peers", `"host:port"`},
		{"peer bad port", "[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"10.0.0.2:0\"]\n", 3, "cluster.peers", "1 to 65535"},
		{"peers without listen", "[cluster]\npeers = [\"10.0.0.2:7101\"]\n", 0, "cluster.listen", "when cluster.peers is set"},
		{"listen without peers", "[cluster]\nlisten = \"127.0.0.1:7101\"\n", 0, "cluster.peers", "other nodes"},
		{"peer twice", "[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"a:1\", \"a:1\"]\n", 3, "cluster.peers", "twice"},
		{"replicas over the cluster", "[backbone]\nreplicas = 5\n[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"a:1\", \"b:1\"]\n", 2, "backbone.replicas", "at most 3"},
		{"replicas without a cluster", "[backbone]\nreplicas = 3\n", 2, "backbone.replicas", "need a cluster"},
		{"replicas 2", "[backbone]\nreplicas = 2\n", 2, "backbone.replicas", "0 (chosen), 1, 3 or 5"},
		{"short lease", "[cluster]\nlease = \"10ms\"\n", 2, "cluster.lease", "between 1s and 10m"},
		{"lease under two beats", "[cluster]\nlease = \"2s\"\nheartbeat = \"1500ms\"\n", 2, "cluster.lease", "at least twice cluster.heartbeat"},
		{"half tls", "[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"a:1\"]\ntls_cert = \"c.pem\"\n", 4, "cluster.tls_cert", "together"},
		{"cluster with url", "[backbone]\nurl = \"nats://a:4222\"\n[cluster]\nlisten = \"127.0.0.1:7101\"\npeers = [\"a:1\"]\n", 4, "cluster.listen", "must be empty with backbone.url"},
		{"bad label", "node_labels = {\"a b\" = \"x\"}\n", 1, "node_labels", "label names"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("cfg.toml", []byte(c.file))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %T %v", err, err)
			}
			if ce.Key != c.key || ce.Line != c.line || ce.File != "cfg.toml" {
				t.Errorf("got file=%q line=%d key=%q, want line=%d key=%q (%v)", ce.File, ce.Line, ce.Key, c.line, c.key, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q does not say %q", err.Error(), c.msg)
			}
		})
	}
}

func TestOverridesKeepOtherDefaults(t *testing.T) {
	cfg, err := Parse("c", []byte("[api]\nlisten = \"127.0.0.1:5000\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.API.Listen = "127.0.0.1:5000"
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v", cfg)
	}
}

func TestEnsureCreatesPrivateHomeOnce(t *testing.T) {
	h := Home{Dir: filepath.Join(t.TempDir(), "home")}
	created, err := h.Ensure()
	if err != nil || !created {
		t.Fatalf("first Ensure: created=%v err=%v", created, err)
	}
	for _, d := range []string{h.Dir, h.SecretsDir(), h.LogDir()} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v err %v, want 0700", d, fi.Mode().Perm(), err)
		}
	}
	fi, err := os.Stat(h.ConfigPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.toml mode: %v %v", fi.Mode().Perm(), err)
	}
	os.WriteFile(h.ConfigPath(), []byte("node = \"mine\"\n"), 0o600)
	if created, err := h.Ensure(); err != nil || created {
		t.Fatalf("second Ensure: created=%v err=%v", created, err)
	}
	if b, _ := os.ReadFile(h.ConfigPath()); string(b) != "node = \"mine\"\n" {
		t.Fatalf("Ensure overwrote the user's config: %q", b)
	}
}

func TestEnsureTightensSecretsDir(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if err := os.MkdirAll(h.SecretsDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Ensure(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(h.SecretsDir()); fi.Mode().Perm() != 0o700 {
		t.Fatalf("secrets mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestNodeNameFallsBackToHost(t *testing.T) {
	c := DefaultConfig()
	n := c.NodeName()
	if n == "" || !nodeName.MatchString(n) {
		t.Fatalf("NodeName() = %q is not a valid node name", n)
	}
	c.Node = "edge-1"
	if c.NodeName() != "edge-1" {
		t.Fatalf("NodeName() ignores the configured name")
	}
}

// Cron jobs of the file are decoded strictly, with errors naming the key;
// their schedules and specs are judged by kernel.CheckConfig (tested
// there).
func TestCronJobs(t *testing.T) {
	ok := "[cron.jobs.report]\nschedule = \"0 3 * * *\"\nzone = \"Europe/Berlin\"\nmissed = \"run-once\"\nspec = { command = \"true\", args = [\"-x\"] }\n\n[cron.jobs.off]\nschedule = \"@every 30s\"\nenabled = false\nspec = { kind = \"llm\", goal = \"summarize\" }\n"
	cfg, err := Parse("c.toml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := cfg.CronJobs()
	if err != nil || len(jobs) != 2 || jobs[0].Name != "off" || jobs[0].Enabled || jobs[1].Spec.Command != "true" || !jobs[1].Enabled || jobs[1].Missed != "run-once" {
		t.Fatalf("%+v %v", jobs, err)
	}
	for _, c := range []struct{ file, key, msg string }{
		{"[cron.jobs.x]\nschedule = \"@daily\"\nspec = { comand = \"true\" }\n", "cron.jobs.x.spec.comand", "unknown key"},
		{"[cron.jobs.x]\nschedule = \"@daily\"\n", "cron.jobs.x.spec", "is required"},
	} {
		_, err := Parse("c.toml", []byte(c.file))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
			t.Errorf("%q: %v", c.file, err)
		}
	}
}
