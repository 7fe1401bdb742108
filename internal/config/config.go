// Package config owns oxios's configuration: the config.toml schema, its
// defaults, loading with strict key checking, and validation whose errors
// name the key and what is allowed.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/pelletier/go-toml/v2"
	"golang.org/x/sys/unix"
)

// Config is the whole of config.toml. Every field has a default
// (DefaultConfig) and a commented line in the generated file (Template).
type Config struct {
	// Node is this daemon's name; empty means the host name.
	Node      string    `toml:"node"`
	API       API       `toml:"api"`
	Daemon    Daemon    `toml:"daemon"`
	Log       Log       `toml:"log"`
	Backbone  Backbone  `toml:"backbone"`
	Store     Store     `toml:"store"`
	Events    Events    `toml:"events"`
	Scheduler Scheduler `toml:"scheduler"`
	Agents    Agents    `toml:"agents"`
	Agent     Agent     `toml:"agent"`
	Providers Providers `toml:"providers"`
	// Prices of models by "provider/model", in USD per million tokens,
	// over the built-in table.
	Prices map[string]Price `toml:"prices"`
	Policy Policy           `toml:"policy"`
	// Sandbox is how agents' programs are confined by default.
	Sandbox Sandbox `toml:"sandbox"`
	// Cron holds the jobs of this file, read-only through the API.
	Cron Cron `toml:"cron"`
}

// Cron configures cron jobs.
type Cron struct {
	// Jobs by name: [cron.jobs.NAME].
	Jobs map[string]CronJob `toml:"jobs,omitempty"`
}

// CronJob is one job of the config file; see internal/cron.
type CronJob struct {
	Schedule string `toml:"schedule"`
	Zone     string `toml:"zone,omitempty"`
	Overlap  string `toml:"overlap,omitempty"`
	Missed   string `toml:"missed,omitempty"`
	// Enabled is true when omitted.
	Enabled *bool `toml:"enabled,omitempty"`
	// Spec is the agent spec each firing spawns, with the keys of the API's
	// spec ("command", "args", "kind", "goal", ...).
	Spec map[string]any `toml:"spec"`
}

// SpecDefaults are the agent spec defaults this config gives.
func (c *Config) SpecDefaults() oxios.SpecDefaults {
	sb := c.Sandbox
	lim := oxios.SandboxLimits{MemoryMB: sb.Limits.MemoryMB, CPUSeconds: sb.Limits.CPUSeconds, OpenFiles: sb.Limits.OpenFiles,
		Processes: sb.Limits.Processes, FileSizeMB: sb.Limits.FileSizeMB}
	return oxios.SpecDefaults{
		StopTimeout: c.Agents.StopTimeout.Duration,
		Model:       c.Agent.DefaultModel,
		MaxSteps:    c.Agent.MaxSteps,
		Timeout:     c.Agent.Timeout.Duration,
		Sandbox:     oxios.SandboxSpec{Mode: sb.Mode, Read: sb.Read, Write: sb.Write, Network: sb.Network, Limits: lim},
		ExecSandbox: oxios.SandboxSpec{Mode: sb.Mode, Read: sb.Read, Write: sb.Write, Network: sb.ExecNetwork, Limits: lim},
		Policy:      c.ToolsPolicy(),
	}
}

// Sandbox is the default sandbox of agents' programs (internal/sandbox).
type Sandbox struct {
	// Mode is enforce, best_effort or off.
	Mode string `toml:"mode"`
	// Network of process agents, and of the exec tool's programs.
	Network     string `toml:"network"`
	ExecNetwork string `toml:"exec_network"`
	// Read and Write are absolute paths every agent's programs may read
	// (and execute) or write, besides their own directory and the system.
	Read   []string      `toml:"read"`
	Write  []string      `toml:"write"`
	Limits SandboxLimits `toml:"limits"`
}

// SandboxLimits are the default resource limits; 0 is none.
type SandboxLimits struct {
	MemoryMB   int64 `toml:"memory_mb"`
	CPUSeconds int64 `toml:"cpu_seconds"`
	OpenFiles  int64 `toml:"open_files"`
	Processes  int64 `toml:"processes"`
	FileSizeMB int64 `toml:"file_size_mb"`
}

// CronJobs returns the file's cron jobs by name, decoded strictly; their
// schedules and specs are judged by the cron package (see Check). Errors
// are *Error naming the key.
func (c *Config) CronJobs() ([]oxios.CronDef, error) {
	names := make([]string, 0, len(c.Cron.Jobs))
	for n := range c.Cron.Jobs {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []oxios.CronDef
	for _, n := range names {
		j := c.Cron.Jobs[n]
		key := "cron.jobs." + n
		d := oxios.CronDef{Name: n, Schedule: j.Schedule, Zone: j.Zone, Overlap: j.Overlap, Missed: j.Missed, Enabled: j.Enabled == nil || *j.Enabled}
		if j.Spec == nil {
			return nil, &Error{Key: key + ".spec", Msg: "is required: the agent each firing spawns, e.g. spec = { command = \"backup.sh\" }"}
		}
		b, err := json.Marshal(j.Spec)
		if err != nil {
			return nil, &Error{Key: key + ".spec", Msg: err.Error()}
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d.Spec); err != nil {
			msg := strings.TrimPrefix(err.Error(), "json: ")
			if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
				return nil, &Error{Key: key + ".spec." + strings.Trim(f, `"`), Msg: "unknown key (the keys of an agent spec: kind, command, args, goal, ...)"}
			}
			return nil, &Error{Key: key + ".spec", Msg: msg}
		}
		out = append(out, d)
	}
	return out, nil
}

// Agent configures language-model agents.
type Agent struct {
	// DefaultModel is the provider/model of llm agents that name none.
	DefaultModel string `toml:"default_model"`
	// MaxSteps is the default most model calls of one run.
	MaxSteps int `toml:"max_steps"`
	// Timeout is the default longest run of an llm agent.
	Timeout Duration `toml:"timeout"`
}

// Providers configures the model providers.
type Providers struct {
	OpenAI    Provider `toml:"openai"`
	Anthropic Provider `toml:"anthropic"`
	Ollama    Provider `toml:"ollama"`
}

// Provider is one provider's endpoint and key; empty values take the
// provider's environment variables (OPENAI_API_KEY, ...).
type Provider struct {
	BaseURL string `toml:"base_url"`
	APIKey  string `toml:"api_key"`
}

// Price is a model's price in USD per million tokens.
type Price struct {
	Input  float64 `toml:"input"`
	Output float64 `toml:"output"`
}

// Policy is the default of what llm agents' tools may touch; a spec's
// policy narrows or widens it (see internal/tools).
type Policy struct {
	Paths   PolicyPaths   `toml:"paths"`
	Exec    PolicyExec    `toml:"exec"`
	Network PolicyNetwork `toml:"network"`
	Ask     []string      `toml:"ask"`
	// AskTimeout rejects an approval left pending this long (0s: never).
	AskTimeout Duration `toml:"ask_timeout"`
}

// PolicyPaths are doublestar globs; relative ones are relative to the
// agent's workspace, and an empty allow list means the workspace only.
type PolicyPaths struct {
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
}

// PolicyExec says which programs the exec tool may run, and how.
type PolicyExec struct {
	Allow       []string `toml:"allow"`
	Shell       bool     `toml:"shell"`
	Env         []string `toml:"env"`
	Timeout     Duration `toml:"timeout"`
	MaxOutputKB int      `toml:"max_output_kb"`
}

// PolicyNetwork lists the hosts http_fetch may reach.
type PolicyNetwork struct {
	Allow []string `toml:"allow"`
}

// EffectiveMaxRunning is MaxRunning, or when it is 0 what this machine
// allows the daemon: a quarter of its open-file limit (an agent's pipes,
// log and process handle) less some for the daemon itself, and half the
// user's process limit, between 64 and 100000. A cap nobody set should
// not be what stops the 257th agent.
func (s Scheduler) EffectiveMaxRunning() int {
	if s.MaxRunning > 0 {
		return s.MaxRunning
	}
	return MachineMaxRunning()
}

// MachineMaxRunning is the cap on running agents derived from this
// process's limits (see EffectiveMaxRunning).
func MachineMaxRunning() int {
	n := uint64(100000)
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) == nil && l.Cur != unix.RLIM_INFINITY {
		n = min(n, (max(l.Cur, 512)-256)/4)
	}
	if unix.Getrlimit(unix.RLIMIT_NPROC, &l) == nil && l.Cur != unix.RLIM_INFINITY {
		n = min(n, l.Cur/2)
	}
	return int(max(n, 64))
}

// Scheduler configures admission: how many agents run at once and how fast
// new ones start.
type Scheduler struct {
	// MaxRunning is the most agents (of any kind) running at once; 0 (the
	// default) derives it from the machine (EffectiveMaxRunning).
	MaxRunning int `toml:"max_running"`
	// MaxRunningLLM is the most language-model agents running at once.
	MaxRunningLLM int `toml:"max_running_llm"`
	// SpawnsPerMinute limits how many agents start in any 60 seconds; 0 is
	// no limit.
	SpawnsPerMinute int `toml:"spawns_per_minute"`
}

// Agents configures defaults and housekeeping of agents.
type Agents struct {
	// StopTimeout is the default grace between the stop signal and SIGKILL.
	StopTimeout Duration `toml:"stop_timeout"`
	// LogMaxMB is the size at which an agent's log is rotated.
	LogMaxMB int `toml:"log_max_mb"`
	// LogMaxFiles is how many rotated files of an agent's log are kept.
	LogMaxFiles int `toml:"log_max_files"`
	// Retain is how many ended agents are kept; older ones are deleted.
	Retain int `toml:"retain"`
	// RetainFor is how long an ended agent is kept.
	RetainFor Duration `toml:"retain_for"`
}

// Backbone configures NATS: embedded (the default) or an external server.
type Backbone struct {
	// URL of an external NATS server or cluster; empty runs NATS embedded.
	URL string `toml:"url"`
	// Credentials is a NATS .creds file for the external server (optional).
	Credentials string `toml:"credentials"`
	// Replicas of each stream and bucket (1, or 3 or 5 on a cluster).
	Replicas int `toml:"replicas"`
}

// Store configures durability of the embedded JetStream storage.
type Store struct {
	// Sync is "always" (fsync every write) or an interval such as "1s".
	Sync string `toml:"sync"`
}

// Events configures the retention of the event log.
type Events struct {
	// MaxAge drops events older than this.
	MaxAge Duration `toml:"max_age"`
	// MaxMB drops the oldest events when the log grows past this size.
	MaxMB int `toml:"max_mb"`
}

// API configures the HTTP server.
type API struct {
	// Listen is the host:port the HTTP API and dashboard bind to.
	Listen string `toml:"listen"`
}

// Daemon configures the daemon's lifecycle.
type Daemon struct {
	// StopTimeout is how long `oxios stop` waits after SIGTERM before SIGKILL.
	StopTimeout Duration `toml:"stop_timeout"`
	// ReadyTimeout is how long `oxios start` waits for /readyz to answer 200.
	ReadyTimeout Duration `toml:"ready_timeout"`
	// ShutdownTimeout is the deadline each part gets to stop during shutdown.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
}

// Log configures the daemon log, logs/oxios.log.
type Log struct {
	// Level is the least severe level written: debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text (key=value lines) or json (one object per line).
	Format string `toml:"format"`
	// MaxSizeMB is the size at which the log file is rotated.
	MaxSizeMB int `toml:"max_size_mb"`
	// MaxFiles is how many rotated files are kept besides the current one.
	MaxFiles int `toml:"max_files"`
}

// DefaultConfig returns the configuration used for every key the file omits.
func DefaultConfig() Config {
	return Config{
		API: API{Listen: "127.0.0.1:4200"},
		Daemon: Daemon{
			StopTimeout:     Duration{oxios.StopTimeout},
			ReadyTimeout:    Duration{15 * time.Second},
			ShutdownTimeout: Duration{5 * time.Second},
		},
		Log:       Log{Level: "info", Format: "text", MaxSizeMB: 10, MaxFiles: 5},
		Backbone:  Backbone{Replicas: 1},
		Store:     Store{Sync: "1s"},
		Events:    Events{MaxAge: Duration{7 * 24 * time.Hour}, MaxMB: 1024},
		Scheduler: Scheduler{MaxRunningLLM: 8},
		Agent:     Agent{DefaultModel: "openai/gpt-4.1-mini", MaxSteps: 50, Timeout: Duration{10 * time.Minute}},
		Providers: Providers{Ollama: Provider{BaseURL: "http://127.0.0.1:11434/v1"}},
		Policy: Policy{
			Paths:   PolicyPaths{Allow: []string{}, Deny: []string{}},
			Exec:    PolicyExec{Allow: []string{}, Env: []string{}, Timeout: Duration{time.Minute}, MaxOutputKB: 64},
			Network: PolicyNetwork{Allow: []string{}},
			Ask:     []string{},
		},
		Sandbox: Sandbox{Mode: oxios.Enforce, Network: oxios.NetAny, ExecNetwork: oxios.NetNone, Read: []string{}, Write: []string{},
			Limits: SandboxLimits{MemoryMB: 4096, OpenFiles: 4096, Processes: 4096}},
		Agents: Agents{
			StopTimeout: Duration{oxios.StopTimeout},
			LogMaxMB:    10,
			LogMaxFiles: 3,
			Retain:      1000,
			RetainFor:   Duration{7 * 24 * time.Hour},
		},
	}
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("10s", "1m30s"). It is a struct, not an integer type, so that a bare
// number in the file is rejected instead of being read as nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return errBadDuration
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

var errBadDuration = errors.New("not a duration")

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{0,64}$`)

// Error is a configuration problem tied to one key. Line is 0 when the
// problem is not tied to a line of the file (for example a flag override).
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// hints says, for each key, what values are allowed. It is used for type
// errors found while decoding, so they read like validation errors.
var hints = map[string]string{
	"node":                         "must be a string",
	"api.listen":                   `must be a "host:port" string such as "127.0.0.1:4200"`,
	"daemon.stop_timeout":          `must be a duration string such as "10s"`,
	"daemon.ready_timeout":         `must be a duration string such as "15s"`,
	"daemon.shutdown_timeout":      `must be a duration string such as "5s"`,
	"log.level":                    "must be one of debug, info, warn, error",
	"log.format":                   "must be text or json",
	"log.max_size_mb":              "must be a whole number of megabytes from 1 to 10240",
	"log.max_files":                "must be a whole number from 0 to 1000",
	"backbone.url":                 `must be a NATS URL string such as "nats://10.0.0.5:4222" (or "" for embedded)`,
	"backbone.credentials":         "must be the path of a NATS .creds file",
	"backbone.replicas":            "must be 1, 3 or 5",
	"store.sync":                   `must be "always" or a duration string such as "1s"`,
	"events.max_age":               `must be a duration string such as "168h"`,
	"events.max_mb":                "must be a whole number of megabytes from 1 to 1048576",
	"scheduler.max_running":        "must be a whole number from 1 to 100000",
	"scheduler.max_running_llm":    "must be a whole number from 1 to 100000",
	"scheduler.spawns_per_minute":  "must be a whole number from 0 (no limit) to 1000000",
	"agents.stop_timeout":          `must be a duration string such as "10s"`,
	"agents.log_max_mb":            "must be a whole number of megabytes from 1 to 10240",
	"agents.log_max_files":         "must be a whole number from 0 to 100",
	"agents.retain":                "must be a whole number from 0 to 1000000",
	"agents.retain_for":            `must be a duration string such as "168h"`,
	"agent.default_model":          `must be a "provider/model" string such as "openai/gpt-4.1-mini"`,
	"agent.max_steps":              "must be a whole number from 1 to 10000",
	"agent.timeout":                `must be a duration string such as "10m"`,
	"providers.openai.base_url":    "must be a URL string (empty: $OPENAI_BASE_URL or OpenAI's)",
	"providers.openai.api_key":     "must be a string (empty: $OPENAI_API_KEY)",
	"providers.anthropic.base_url": "must be a URL string (empty: Anthropic's)",
	"providers.anthropic.api_key":  "must be a string (empty: $ANTHROPIC_API_KEY)",
	"providers.ollama.base_url":    "must be a URL string",
	"providers.ollama.api_key":     "must be a string (Ollama needs none)",
	"policy.paths.allow":           `must be a list of glob strings such as ["./**"]`,
	"policy.paths.deny":            "must be a list of glob strings",
	"policy.exec.allow":            `must be a list of program names or absolute paths such as ["git"]`,
	"policy.exec.shell":            "must be true or false",
	"policy.exec.env":              "must be a list of environment variable names",
	"policy.exec.timeout":          `must be a duration string such as "60s"`,
	"policy.exec.max_output_kb":    "must be a whole number from 1 to 1024",
	"policy.network.allow":         `must be a list of hosts such as ["api.github.com", "*.example.com"]`,
	"policy.ask":                   "must be a list of tool names",
	"policy.ask_timeout":           `must be a duration string such as "30m" ("0s": never)`,
}

// Check judges what of a config only the engines can: the tools' policy,
// the default sandbox, the cron jobs' schedules and specs. kernel.CheckConfig
// is the one; an *Error it returns is placed at its key's line.
type Check func(*Config) error

// Load reads the file at path over the defaults and validates the result,
// then runs checks on it. Unknown keys, values of the wrong type and
// invalid values are reported as *Error naming the file, line and key.
func Load(path string, checks ...Check) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(path, data, checks...)
}

// Parse is Load for bytes already read; name is used in error messages.
func Parse(name string, data []byte, checks ...Check) (Config, error) {
	cfg := DefaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, errBadDuration) {
			// go-toml reports a non-string duration without its key.
			if key := badDurationKey(data); key != "" {
				return Config{}, &Error{File: name, Line: lineOf(data, key), Key: key, Msg: hints[key]}
			}
		}
		return Config{}, decodeError(name, err)
	}
	err := cfg.Validate()
	for _, check := range checks {
		if err != nil {
			break
		}
		err = check(&cfg)
	}
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = lineOf(data, ce.Key)
		}
		return Config{}, err
	}
	return cfg, nil
}

func decodeError(name string, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		e := sm.Errors[0]
		row, _ := e.Position()
		key := strings.Join(e.Key(), ".")
		return &Error{File: name, Line: row, Key: key, Msg: "unknown key (`oxios config show` lists the keys that exist)"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if strings.Contains(de.Error(), "already") || strings.Contains(de.Error(), "duplicate") {
			return &Error{File: name, Line: row, Key: key, Msg: "is set twice"}
		}
		if hint, ok := hints[key]; ok {
			return &Error{File: name, Line: row, Key: key, Msg: hint}
		}
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if key != "" {
			if strings.Contains(msg, "cannot decode") {
				msg = "has the wrong type (`oxios config show` shows what belongs there)"
			}
			return &Error{File: name, Line: row, Key: key, Msg: msg}
		}
		return &Error{File: name, Line: row, Msg: "invalid TOML: " + msg}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// badDurationKey returns the duration key, nearest the top of the file,
// whose value is not a duration string.
func badDurationKey(data []byte) string {
	var raw map[string]any
	if toml.Unmarshal(data, &raw) != nil {
		return ""
	}
	best, bestLine := "", 0
	for key, hint := range hints {
		if !strings.Contains(hint, "duration") {
			continue
		}
		var v any = raw
		for _, part := range strings.Split(key, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[part]
		}
		if v == nil {
			continue
		}
		if s, ok := v.(string); ok {
			if _, err := time.ParseDuration(s); err == nil {
				continue
			}
		}
		if line := lineOf(data, key); best == "" || line < bestLine {
			best, bestLine = key, line
		}
	}
	return best
}

// lineOf finds the line on which key is assigned, so validation errors can
// point at it. It returns 0 when the key is not written in the file.
func lineOf(data []byte, key string) int {
	table, leaf := "", key
	if i := strings.LastIndex(key, "."); i >= 0 {
		table, leaf = key[:i], key[i+1:]
	}
	current := ""
	for n, line := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(line)
		if strings.HasPrefix(s, "[") {
			current = strings.Trim(strings.TrimSpace(strings.SplitN(s, "#", 2)[0]), "[] ")
			continue
		}
		k, _, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		if current == table && k == leaf {
			return n + 1
		}
		if current == "" && k == key {
			return n + 1
		}
	}
	return 0
}

// Validate checks every value and returns an *Error for the first invalid one.
func (c *Config) Validate() error {
	if !nodeName.MatchString(c.Node) {
		return &Error{Key: "node", Msg: fmt.Sprintf("must be at most 64 letters, digits, '-' or '_' (got %q)", c.Node)}
	}
	if err := ValidateListen(c.API.Listen); err != nil {
		return &Error{Key: "api.listen", Msg: err.Error()}
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"daemon.stop_timeout", c.Daemon.StopTimeout.Duration, 100 * time.Millisecond, time.Hour},
		{"daemon.ready_timeout", c.Daemon.ReadyTimeout.Duration, time.Millisecond, time.Hour},
		{"daemon.shutdown_timeout", c.Daemon.ShutdownTimeout.Duration, 100 * time.Millisecond, time.Hour},
	} {
		if d.v < d.min || d.v > d.max {
			return &Error{Key: d.key, Msg: fmt.Sprintf("must be between %s and %s (got %s)", d.min, d.max, d.v)}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &Error{Key: "log.level", Msg: fmt.Sprintf("must be one of debug, info, warn, error (got %q)", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &Error{Key: "log.format", Msg: fmt.Sprintf("must be text or json (got %q)", c.Log.Format)}
	}
	if c.Log.MaxSizeMB < 1 || c.Log.MaxSizeMB > 10240 {
		return &Error{Key: "log.max_size_mb", Msg: fmt.Sprintf("must be from 1 to 10240 (got %d)", c.Log.MaxSizeMB)}
	}
	if c.Log.MaxFiles < 0 || c.Log.MaxFiles > 1000 {
		return &Error{Key: "log.max_files", Msg: fmt.Sprintf("must be from 0 to 1000 (got %d)", c.Log.MaxFiles)}
	}
	if u := c.Backbone.URL; u != "" {
		for _, one := range strings.Split(u, ",") {
			pu, err := url.Parse(strings.TrimSpace(one))
			if err != nil || pu.Host == "" || (pu.Scheme != "nats" && pu.Scheme != "tls" && pu.Scheme != "ws" && pu.Scheme != "wss") {
				return &Error{Key: "backbone.url", Msg: fmt.Sprintf("must be nats://host:port (or tls://, ws://, wss://), comma-separated for a cluster (got %q)", one)}
			}
		}
	}
	if c.Backbone.Credentials != "" && c.Backbone.URL == "" {
		return &Error{Key: "backbone.credentials", Msg: "is only used with backbone.url (an external NATS server)"}
	}
	switch c.Backbone.Replicas {
	case 1, 3, 5:
	default:
		return &Error{Key: "backbone.replicas", Msg: fmt.Sprintf("must be 1, 3 or 5 (got %d)", c.Backbone.Replicas)}
	}
	if c.Backbone.Replicas > 1 && c.Backbone.URL == "" {
		return &Error{Key: "backbone.replicas", Msg: "must be 1 with the embedded backbone (replicas need a NATS cluster in backbone.url)"}
	}
	if _, _, err := c.Store.SyncPolicy(); err != nil {
		return &Error{Key: "store.sync", Msg: err.Error()}
	}
	if d := c.Events.MaxAge.Duration; d < time.Minute {
		return &Error{Key: "events.max_age", Msg: fmt.Sprintf("must be at least 1m (got %s)", d)}
	}
	if c.Events.MaxMB < 1 || c.Events.MaxMB > 1<<20 {
		return &Error{Key: "events.max_mb", Msg: fmt.Sprintf("must be from 1 to 1048576 (got %d)", c.Events.MaxMB)}
	}
	for _, n := range []struct {
		key      string
		v        int
		min, max int
	}{
		{"scheduler.max_running", c.Scheduler.MaxRunning, 0, 100000},
		{"scheduler.max_running_llm", c.Scheduler.MaxRunningLLM, 1, 100000},
		{"scheduler.spawns_per_minute", c.Scheduler.SpawnsPerMinute, 0, 1000000},
		{"agents.log_max_mb", c.Agents.LogMaxMB, 1, 10240},
		{"agents.log_max_files", c.Agents.LogMaxFiles, 0, 100},
		{"agents.retain", c.Agents.Retain, 0, 1000000},
	} {
		if n.v < n.min || n.v > n.max {
			return &Error{Key: n.key, Msg: fmt.Sprintf("must be from %d to %d (got %d)", n.min, n.max, n.v)}
		}
	}
	if d := c.Agents.StopTimeout.Duration; d < 0 || d > time.Hour {
		return &Error{Key: "agents.stop_timeout", Msg: fmt.Sprintf("must be between 0s and 1h (got %s)", d)}
	}
	if d := c.Agents.RetainFor.Duration; d < time.Minute {
		return &Error{Key: "agents.retain_for", Msg: fmt.Sprintf("must be at least 1m (got %s)", d)}
	}
	return c.validateLLM()
}

// providerNames are the providers a model id may name.
var providerNames = []string{"openai", "anthropic", "ollama"}

func (c *Config) validateLLM() error {
	prov, model, ok := strings.Cut(c.Agent.DefaultModel, "/")
	if !ok || model == "" || !slices.Contains(providerNames, prov) {
		return &Error{Key: "agent.default_model", Msg: fmt.Sprintf("must be provider/model with provider one of %s (got %q)", strings.Join(providerNames, ", "), c.Agent.DefaultModel)}
	}
	if c.Agent.MaxSteps < 1 || c.Agent.MaxSteps > 10000 {
		return &Error{Key: "agent.max_steps", Msg: fmt.Sprintf("must be from 1 to 10000 (got %d)", c.Agent.MaxSteps)}
	}
	if d := c.Agent.Timeout.Duration; d < time.Second || d > 7*24*time.Hour {
		return &Error{Key: "agent.timeout", Msg: fmt.Sprintf("must be between 1s and 168h (got %s)", d)}
	}
	for key, u := range map[string]string{"providers.openai.base_url": c.Providers.OpenAI.BaseURL,
		"providers.anthropic.base_url": c.Providers.Anthropic.BaseURL, "providers.ollama.base_url": c.Providers.Ollama.BaseURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return &Error{Key: key, Msg: fmt.Sprintf("must be an http or https URL (got %q)", u)}
		}
	}
	for id, p := range c.Prices {
		prov, model, ok := strings.Cut(id, "/")
		if !ok || model == "" || !slices.Contains(providerNames, prov) {
			return &Error{Key: "prices." + id, Msg: "must be a provider/model id such as \"openai/gpt-4.1-mini\""}
		}
		if p.Input < 0 || p.Output < 0 {
			return &Error{Key: "prices." + id, Msg: fmt.Sprintf("prices must not be negative (got input %g, output %g)", p.Input, p.Output)}
		}
	}
	if err := c.validateSandbox(); err != nil {
		return err
	}
	if _, err := c.CronJobs(); err != nil {
		return err
	}
	if d := c.Policy.Exec.Timeout.Duration; d <= 0 {
		return &Error{Key: "policy.exec.timeout", Msg: fmt.Sprintf("must be more than 0s (got %s)", d)}
	}
	if n := c.Policy.Exec.MaxOutputKB; n < 1 || n > oxios.MaxOutputKB {
		return &Error{Key: "policy.exec.max_output_kb", Msg: fmt.Sprintf("must be from 1 to %d (got %d)", oxios.MaxOutputKB, n)}
	}
	return nil
}

// ToolsPolicy is the configured policy as the tools' gate takes it.
func (c *Config) ToolsPolicy() oxios.Policy {
	shell := c.Policy.Exec.Shell
	return oxios.Policy{
		Paths: oxios.PathPolicy{Allow: c.Policy.Paths.Allow, Deny: c.Policy.Paths.Deny},
		Exec: oxios.ExecPolicy{Allow: c.Policy.Exec.Allow, Shell: &shell, Env: c.Policy.Exec.Env,
			Timeout: c.Policy.Exec.Timeout.String(), MaxOutputKB: c.Policy.Exec.MaxOutputKB},
		Network:    oxios.NetworkPolicy{Allow: c.Policy.Network.Allow},
		Ask:        c.Policy.Ask,
		AskTimeout: c.Policy.AskTimeout.String(),
	}
}

// SyncPolicy interprets store.sync: always fsync, or fsync every interval.
func (s Store) SyncPolicy() (always bool, interval time.Duration, err error) {
	if s.Sync == "always" {
		return true, 0, nil
	}
	d, perr := time.ParseDuration(s.Sync)
	if perr != nil || d < 10*time.Millisecond || d > time.Minute {
		return false, 0, fmt.Errorf(`must be "always" or a duration from 10ms to 1m such as "1s" (got %q)`, s.Sync)
	}
	return false, d, nil
}

// ValidateListen checks a "host:port" listen address: the port must be a
// number from 1 to 65535 and the host an IP address, "localhost" or empty.
func ValidateListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`must be "host:port" such as "127.0.0.1:4200" (got %q)`, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be a number from 1 to 65535 (got %q)", port)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("host must be an IP address or localhost (got %q)", host)
	}
	return nil
}

// NodeName returns the configured node name, or the host name when unset.
func (c *Config) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	h = strings.Map(func(r rune) rune {
		if r < 128 && nodeName.MatchString(string(r)) {
			return r
		}
		return '-'
	}, h)
	if len(h) > 64 {
		h = h[:64]
	}
	return h
}

// Marshal renders the configuration as TOML, as `oxios config show` prints it.
func (c *Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Redacted returns c with its secrets (provider API keys) replaced, for
// showing.
func (c Config) Redacted() Config {
	for _, p := range []*Provider{&c.Providers.OpenAI, &c.Providers.Anthropic, &c.Providers.Ollama} {
		if p.APIKey != "" {
			p.APIKey = "(set; not shown)"
		}
	}
	return c
}

func (c *Config) validateSandbox() error {
	if c.Sandbox.Mode == "" {
		return &Error{Key: "sandbox.mode", Msg: "must be enforce, best_effort or off (got \"\")"}
	}
	for key, v := range map[string]string{"sandbox.network": c.Sandbox.Network, "sandbox.exec_network": c.Sandbox.ExecNetwork} {
		if v == "" {
			return &Error{Key: key, Msg: "must be none, loopback or any (got \"\")"}
		}
	}
	return nil
}
