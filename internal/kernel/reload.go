package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/pelletier/go-toml/v2"

	"github.com/oxios/oxios/internal/api"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/scheduler"
)

// liveParts are what a reload changes, and the configuration in effect.
// Guarded by Kernel.mu.
type liveParts struct {
	cfg config.Config
	// file is the config file as last read and boot as read at boot
	// (both without --listen and other overrides): a reload applies what
	// changed since the last read and names what differs from boot.
	file  config.Config
	boot  config.Config
	level *slog.LevelVar
	// parts is what the parts opened, once the supervisor is up (a
	// reload or a backup before that is refused): the same references,
	// not copies of them.
	parts *wiring
}

// liveKey reports whether a setting applies without a restart: scheduler
// limits, the default policy, the log level and retention.
func liveKey(key string) bool {
	return strings.HasPrefix(key, "scheduler.") || strings.HasPrefix(key, "policy.") ||
		key == "log.level" || key == "agents.retain" || key == "agents.retain_for"
}

// reload reads the config file again and applies what can change while the
// daemon runs. An invalid file changes nothing (the error says why).
func (k *Kernel) reload(ctx context.Context) (api.ReloadResult, error) {
	next, err := loadConfig(k.opts.ConfigPath)
	if errors.Is(err, os.ErrNotExist) {
		next, err = config.DefaultConfig(), nil
	}
	if err != nil {
		return api.ReloadResult{}, err
	}
	k.mu.Lock()
	l := &k.live
	if l.parts == nil {
		k.mu.Unlock()
		return api.ReloadResult{}, oxios.ErrStarting
	}
	res := api.ReloadResult{Applied: []string{}, RestartNeeded: []string{}}
	for _, key := range diffKeys(l.file, next) {
		if liveKey(key) {
			res.Applied = append(res.Applied, key)
		}
	}
	// Until a restart, a setting that cannot change live stays as it was
	// at boot, however many reloads come.
	for _, key := range diffKeys(l.boot, next) {
		if !liveKey(key) {
			res.RestartNeeded = append(res.RestartNeeded, key)
		}
	}
	l.file = next
	cur := l.cfg
	cur.Scheduler, cur.Policy = next.Scheduler, next.Policy
	cur.Log.Level = next.Log.Level
	cur.Agents.Retain, cur.Agents.RetainFor = next.Agents.Retain, next.Agents.RetainFor
	l.cfg = cur

	l.parts.sched.SetLimits(scheduler.Limits{MaxRunning: cur.Scheduler.EffectiveMaxRunning(), MaxRunningLLM: cur.Scheduler.MaxRunningLLM,
		SpawnsPerMinute: cur.Scheduler.SpawnsPerMinute})
	l.parts.llm.SetPolicy(cur.ToolsPolicy())
	l.level.UnmarshalText([]byte(cur.Log.Level))
	l.parts.agents.SetRetention(cur.Agents.Retain, cur.Agents.RetainFor.Duration)
	trail, js := l.parts.trail, l.parts.bb.JS
	k.mu.Unlock()

	k.log.Info("configuration reloaded", "applied", res.Applied, "restart_needed", res.RestartNeeded)
	k.log.Debug("settings in effect", "scheduler", cur.Scheduler, "retain", cur.Agents.Retain, "retain_for", cur.Agents.RetainFor.String())
	b, _ := os.ReadFile(k.opts.ConfigPath)
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	actx, cancel := context.WithTimeout(ctx, oxios.BackboneTimeout)
	defer cancel()
	if _, err := trail.Append(actx, audit.Entry{Actor: "node:" + k.node, Action: "config.reloaded", Resource: "config",
		Detail: map[string]any{"path": k.opts.ConfigPath, "sha256": hash, "applied": res.Applied, "restart_needed": res.RestartNeeded}}); err != nil {
		k.log.Error("audit", "action", "config.reloaded", "err", err)
	}
	// The change is audited now: the next boot need not report it again.
	if kv, err := js.KeyValue(actx, "nodes"); err == nil {
		kv.Put(actx, k.node+".config", []byte(hash))
	}
	return res, nil
}

// diffKeys lists the dotted keys whose values differ between a and b.
func diffKeys(a, b config.Config) []string {
	fa, fb := flatten(a), flatten(b)
	var out []string
	for k, v := range fa {
		if w, ok := fb[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func flatten(c config.Config) map[string]any {
	b, err := c.Marshal()
	if err != nil {
		return nil
	}
	var m map[string]any
	if toml.Unmarshal(b, &m) != nil {
		return nil
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok && !strings.HasPrefix(prefix, "prices.") && !strings.HasPrefix(prefix, "cron.jobs.") {
			for k, x := range mm {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x)
			}
			return
		}
		out[prefix] = v
	}
	walk("", m)
	return out
}
