// Package config owns oxios's configuration: the config.toml schema, its
// defaults, loading with strict key checking, and validation whose errors
// name the key and what is allowed.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
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
	Node string `toml:"node"`
	// NodeLabels describe this node to the cluster (node list, placement).
	NodeLabels map[string]string `toml:"node_labels"`
	API        API               `toml:"api"`
	Daemon     Daemon            `toml:"daemon"`
	Log        Log               `toml:"log"`
	Backbone   Backbone          `toml:"backbone"`
	Cluster    Cluster           `toml:"cluster"`
	Store      Store             `toml:"store"`
	Events     Events            `toml:"events"`
	Scheduler  Scheduler         `toml:"scheduler"`
	Agents     Agents            `toml:"agents"`
	Agent      Agent             `toml:"agent"`
	Providers  Providers         `toml:"providers"`
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
	// Replicas of each stream and bucket: 1, 3 or 5; 0 chooses (3 on an
	// embedded cluster of 3 or more nodes, else 1).
	Replicas int `toml:"replicas"`
}

// Cluster configures the embedded backbone's clustering and the
// membership of this node (which an external backbone uses too).
type Cluster struct {
	// Listen is this node's route address; empty: no embedded cluster.
	Listen string `toml:"listen"`
	// Peers are the other nodes' route addresses.
	Peers []string `toml:"peers"`
	// Lease is how long a node that stops beating is held alive; past it,
	// it is dead.
	Lease Duration `toml:"lease"`
	// Heartbeat is how often a node beats; 0 is a fifth of the lease.
	Heartbeat Duration `toml:"heartbeat"`
	// TLSCert, TLSKey and TLSCA secure the routes (all three, or none).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	TLSCA   string `toml:"tls_ca"`
}

// Beat is the heartbeat interval: cluster.heartbeat, or lease/5.
func (c Cluster) Beat() time.Duration {
	if c.Heartbeat.Duration > 0 {
		return c.Heartbeat.Duration
	}
	return c.Lease.Duration / 5
}

// EmbeddedCluster reports whether this node's embedded backbone forms a cluster.
func (c *Config) EmbeddedCluster() bool { return c.Cluster.Listen != "" }

// ClusterSize is the number of nodes of the embedded cluster (1 without).
func (c *Config) ClusterSize() int {
	if c.Cluster.Listen == "" {
		return 1
	}
	return 1 + len(c.Cluster.Peers)
}

// EffectiveReplicas is backbone.replicas, or the one it chooses when 0.
func (c *Config) EffectiveReplicas() int {
	switch {
	case c.Backbone.Replicas > 0:
		return c.Backbone.Replicas
	case c.ClusterSize() >= 3:
		return 3
	}
	return 1
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
		Log:        Log{Level: "info", Format: "text", MaxSizeMB: 10, MaxFiles: 5},
		NodeLabels: map[string]string{},
		Backbone:   Backbone{},
		Cluster:    Cluster{Peers: []string{}, Lease: Duration{5 * time.Second}},
		Store:      Store{Sync: "1s"},
		Events:     Events{MaxAge: Duration{7 * 24 * time.Hour}, MaxMB: 1024},
		Scheduler:  Scheduler{MaxRunningLLM: 8},
		Agent:      Agent{DefaultModel: "openai/gpt-4.1-mini", MaxSteps: 50, Timeout: Duration{10 * time.Minute}},
		Providers:  Providers{Ollama: Provider{BaseURL: "http://127.0.0.1:11434/v1"}},
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
