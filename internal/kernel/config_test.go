package kernel

import (
	"errors"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/config"
)

// What only the engines judge is checked at load, with errors naming the
// file's key (and, for cron expressions, the position) and its line.
func TestCheckConfig(t *testing.T) {
	ok := "[cron.jobs.report]\nschedule = \"0 3 * * *\"\nzone = \"Europe/Berlin\"\nspec = { command = \"true\" }\n\n[policy.paths]\nallow = [\"**/*.md\"]\n"
	if _, err := config.Parse("c.toml", []byte(ok), CheckConfig); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, key, msg string
		line           int
	}{
		{"[cron.jobs.x]\nschedule = \"0 3 * * mon-fry\"\nspec = { command = \"true\" }\n", "cron.jobs.x.schedule", `"fry" is not a number or a name at position 9`, 2},
		{"[cron.jobs.x]\nschedule = \"@daily\"\nzone = \"Nowhere/City\"\nspec = { command = \"true\" }\n", "cron.jobs.x.zone", "unknown time zone", 3},
		{"[cron.jobs.x]\nschedule = \"@daily\"\noverlap = \"maybe\"\nspec = { command = \"true\" }\n", "cron.jobs.x.overlap", "skip, queue or allow", 3},
		{"[cron.jobs.x]\nschedule = \"@daily\"\nspec = { command = \"true\", stop_signal = \"SIGNOPE\" }\n", "cron.jobs.x.spec.stop_signal", "must be one of SIGTERM", 0},
		{"[policy.paths]\nallow = [\"a/[b\"]\n", "policy.paths.allow", "is not a valid glob", 2},
		{"[sandbox]\nread = [\"/nowhere/at/all\"]\n", "sandbox.read", "does not exist", 2},
	} {
		_, err := config.Parse("c.toml", []byte(c.file), CheckConfig)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) || ce.File != "c.toml" || (c.line != 0 && ce.Line != c.line) {
			t.Errorf("%q: %v (%+v)", c.file, err, ce)
		}
		if _, err := config.Parse("c.toml", []byte(c.file)); err != nil {
			t.Errorf("%q without the engines' check: %v", c.file, err)
		}
	}
}
