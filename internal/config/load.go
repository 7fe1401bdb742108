package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

var errBadDuration = errors.New("not a duration")

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
	"backbone.replicas":            "must be 0 (chosen), 1, 3 or 5",
	"node_labels":                  `must be a table of strings such as {gpu = "yes"}`,
	"cluster.listen":               `must be a "host:port" string such as "10.0.0.1:7101"`,
	"cluster.peers":                `must be a list of "host:port" strings`,
	"cluster.lease":                `must be a duration string such as "5s"`,
	"cluster.heartbeat":            `must be a duration string such as "1s"`,
	"cluster.tls_cert":             "must be the path of a PEM certificate",
	"cluster.tls_key":              "must be the path of a PEM private key",
	"cluster.tls_ca":               "must be the path of a PEM CA certificate",
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
