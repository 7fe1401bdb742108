package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{0,64}$`)

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
	if err := c.validateCluster(); err != nil {
		return err
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

var labelKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)

// validateCluster checks node_labels, [cluster] and backbone.replicas
// together: replicas are bounded by the cluster's size.
func (c *Config) validateCluster() error {
	for k, v := range c.NodeLabels {
		if !labelKey.MatchString(k) {
			return &Error{Key: "node_labels", Msg: fmt.Sprintf("label names must be 1 to 63 letters, digits, '.', '_', '/' or '-' (got %q)", k)}
		}
		if len(v) > 256 {
			return &Error{Key: "node_labels." + k, Msg: fmt.Sprintf("must be at most 256 bytes (got %d)", len(v))}
		}
	}
	cl := c.Cluster
	if d := cl.Lease.Duration; d < time.Second || d > 10*time.Minute {
		return &Error{Key: "cluster.lease", Msg: fmt.Sprintf("must be between 1s and 10m (got %s)", d)}
	}
	if hb := cl.Heartbeat.Duration; hb < 0 || (hb > 0 && 2*hb > cl.Lease.Duration) {
		return &Error{Key: "cluster.lease", Msg: fmt.Sprintf("must be at least twice cluster.heartbeat (%s), or a node is dead between two beats (got %s)", hb, cl.Lease.Duration)}
	}
	if cl.Listen == "" && len(cl.Peers) > 0 {
		return &Error{Key: "cluster.listen", Msg: `must be this node's route address ("host:port") when cluster.peers is set`}
	}
	if cl.Listen != "" {
		if c.Backbone.URL != "" {
			return &Error{Key: "cluster.listen", Msg: "must be empty with backbone.url: an external NATS cluster does its own clustering"}
		}
		if err := validHostPort(cl.Listen); err != nil {
			return &Error{Key: "cluster.listen", Msg: err.Error()}
		}
		if len(cl.Peers) == 0 {
			return &Error{Key: "cluster.peers", Msg: `must name the other nodes' route addresses (["10.0.0.2:7101", ...]) when cluster.listen is set`}
		}
	}
	seen := map[string]bool{cl.Listen: true}
	for _, p := range cl.Peers {
		if err := validHostPort(p); err != nil {
			return &Error{Key: "cluster.peers", Msg: err.Error()}
		}
		if seen[p] {
			return &Error{Key: "cluster.peers", Msg: fmt.Sprintf("%q is listed twice (or is cluster.listen itself)", p)}
		}
		seen[p] = true
	}
	tls := []string{cl.TLSCert, cl.TLSKey, cl.TLSCA}
	if set := len(slices.DeleteFunc(slices.Clone(tls), func(s string) bool { return s == "" })); set != 0 && set != 3 {
		return &Error{Key: "cluster.tls_cert", Msg: "cluster.tls_cert, tls_key and tls_ca must be set together (or none of them)"}
	}
	if cl.TLSCert != "" && cl.Listen == "" {
		return &Error{Key: "cluster.tls_cert", Msg: "is only used with cluster.listen (an embedded cluster)"}
	}
	switch c.Backbone.Replicas {
	case 0, 1, 3, 5:
	default:
		return &Error{Key: "backbone.replicas", Msg: fmt.Sprintf("must be 0 (chosen), 1, 3 or 5 (got %d)", c.Backbone.Replicas)}
	}
	if c.Backbone.URL == "" && c.Backbone.Replicas > c.ClusterSize() {
		if c.ClusterSize() == 1 {
			return &Error{Key: "backbone.replicas", Msg: fmt.Sprintf("must be 0 or 1 with the embedded backbone of one node (got %d; replicas need a cluster: [cluster] or backbone.url)", c.Backbone.Replicas)}
		}
		return &Error{Key: "backbone.replicas", Msg: fmt.Sprintf("must be at most %d, the cluster's nodes (cluster.listen and %d cluster.peers) (got %d)", c.ClusterSize(), len(cl.Peers), c.Backbone.Replicas)}
	}
	return nil
}

// validHostPort checks a "host:port" route address: a host name or IP and
// a port from 1 to 65535.
func validHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf(`must be "host:port" such as "10.0.0.2:7101" (got %q)`, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be a number from 1 to 65535 (got %q in %q)", port, addr)
	}
	return nil
}
