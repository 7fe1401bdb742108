package kernel

import (
	"errors"
	"strings"

	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/tools"
)

// CheckConfig judges what of c only the engines can: the tools' policy
// (its globs), the default sandbox (its paths, which it resolves) and the
// cron jobs (their schedules, zones and specs, checked as a spawn would
// check them). Every load of a config that is to run passes it to
// config.Load; errors are *config.Error naming the key.
func CheckConfig(c *config.Config) error {
	if err := tools.ValidatePolicy(c.ToolsPolicy(), "policy."); err != nil {
		return configError("policy", err)
	}
	d := c.SpecDefaults()
	for _, sb := range []oxios.SandboxSpec{d.Sandbox, d.ExecSandbox} {
		if err := sandbox.Validate(&sb, "sandbox."); err != nil {
			return configError("sandbox", err)
		}
	}
	defs, err := c.CronJobs()
	if err != nil {
		return err
	}
	for _, def := range defs {
		if _, err := cron.Validate(&def, d); err != nil {
			var inv *oxios.InvalidError
			if errors.As(err, &inv) {
				return &config.Error{Key: "cron.jobs." + def.Name + "." + inv.Field, Msg: inv.Msg}
			}
			return &config.Error{Key: "cron.jobs." + def.Name, Msg: err.Error()}
		}
	}
	return nil
}

// configError is err, an engine's *oxios.InvalidError, as a *config.Error
// on the key of its field (a list's key, for an element of it).
func configError(key string, err error) error {
	var inv *oxios.InvalidError
	if errors.As(err, &inv) {
		k, _, _ := strings.Cut(inv.Field, "[")
		return &config.Error{Key: k, Msg: inv.Msg}
	}
	return &config.Error{Key: key, Msg: err.Error()}
}

// loadConfig is config.Load with CheckConfig.
func loadConfig(path string) (config.Config, error) { return config.Load(path, CheckConfig) }
