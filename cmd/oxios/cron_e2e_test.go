package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/oxios"
)

// Budgets and cron jobs end to end, through the CLI and a real daemon that
// is killed with SIGKILL in the middle: the budget's usage and the jobs
// (with their history) come back, the job goes on firing, and an llm agent
// under the exhausted budget — spawned by hand or by a job — does not start.
func TestCronAndBudgetsSurviveSIGKILL(t *testing.T) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey, agenttest.Reply{Text: "spent", In: 80, Out: 40})
	os.MkdirAll(e.home, 0o700)
	cfg := "[cron.jobs.from-config]\nschedule = \"@hourly\"\nspec = { command = \"true\" }\n"
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte(cfg), 0o600)
	pid := e.startWithModel(llm)
	e.stopAtEnd()

	cronBudgetBadInput(t, e)

	if r := e.oxios("budget", "set", "global", "--tokens", "100", "--window", "1h"); r.code != 0 || !strings.Contains(r.stdout, "0 / 100 (0%)") {
		t.Fatalf("budget set: %s", r)
	}
	if r := e.oxios("run", "spend it"); r.code != 0 || r.stdout != "spent\n" {
		t.Fatalf("run: %s", r)
	}
	usage := func() oxios.BudgetStatus { t.Helper(); return budgetOf(t, e, "global") }
	if st := usage(); st.Used.Tokens != 120 || st.Used.Calls != 1 || !st.Exhausted {
		t.Fatalf("after the run: %+v", st)
	}

	if r := e.oxios("cron", "add", "tick", "--schedule", "@every 1s", "--", "true"); r.code != 0 || !strings.Contains(r.stdout, "@every 1s") {
		t.Fatalf("cron add: %s", r)
	}
	if r := e.oxios("cron", "add", "digest", "--schedule", "@hourly", "--disabled", "--kind", "llm", "--goal", "summarize"); r.code != 0 {
		t.Fatalf("cron add llm: %s", r)
	}
	job := func(name string) oxios.CronStatus { t.Helper(); return cronJob(t, e, name) }
	fired := func(after time.Time) oxios.CronStatus { t.Helper(); return firedAfter(t, e, "tick", after) }
	before := fired(time.Time{})
	if r := e.oxios("cron", "list"); r.code != 0 || !strings.Contains(r.stdout, "from-config") || !strings.Contains(r.stdout, "config") || !strings.Contains(r.stdout, "digest") {
		t.Fatalf("cron list: %s", r)
	}
	if r := e.oxios("cron", "rm", "from-config"); r.code != 1 || !strings.Contains(r.stderr, "config file") {
		t.Fatalf("removing a config job: %s", r)
	}

	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	restarted := time.Now()
	e.startWithModel(llm)

	if st := usage(); st.Used.Tokens != 120 || !st.Exhausted {
		t.Fatalf("the budget's usage was lost: %+v", st)
	}
	after := fired(restarted)
	if len(after.Recent) <= len(before.Recent) && len(after.Recent) < 10 {
		t.Fatalf("the job's history was lost: %d runs before, %d after", len(before.Recent), len(after.Recent))
	}
	if r := e.oxios("run", "more"); r.code != 1 || !strings.Contains(r.stderr, "budget exhausted: global allows 100 tokens per 1h and 120 were used") {
		t.Fatalf("run over budget: %s", r)
	}
	r := e.oxios("cron", "trigger", "digest", "--wait")
	if r.code != 1 {
		t.Fatalf("cron trigger of an llm job over budget: %s", r)
	}
	if d := job("digest"); d.LastOutcome != "failed" || len(d.Recent) != 1 {
		t.Fatalf("digest: %+v", d)
	} else if rec := e.agent(d.Recent[0].AgentID); !strings.HasPrefix(rec.Reason, "budget exhausted") || rec.StartedAt != nil {
		t.Fatalf("the job's agent: %s %q", rec.State, rec.Reason)
	}
	if llm.Count() != 1 {
		t.Fatalf("the model was called %d times over budget", llm.Count()-1)
	}
	if r := e.oxios("budget", "reset", "global"); r.code != 0 || !strings.Contains(r.stdout, "ok") {
		t.Fatalf("reset: %s", r)
	}
	if r := e.oxios("run", "again"); r.code != 0 {
		t.Fatalf("run after reset: %s", r)
	}
	if r := e.oxios("cron", "disable", "tick"); r.code != 0 || !strings.Contains(r.stdout, "Enabled:       no") || !strings.Contains(r.stdout, "Next run:      -") {
		t.Fatalf("disable: %s", r)
	}
	if r := e.oxios("audit", "list", "--action", "cron.*"); r.code != 0 || !strings.Contains(r.stdout, "cron.created") || !strings.Contains(r.stdout, "cron.disabled") {
		t.Fatalf("audit: %s", r)
	}
}

// Bad input to budget set and cron add: exit 2 with one line naming the
// field (and the position).
func cronBudgetBadInput(t *testing.T, e *env) {
	t.Helper()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"budget", "set", "global", "--tokens", "-1"}, "tokens: must be 0 (no limit) or more"},
		{[]string{"budget", "set", "team", "--tokens", "1"}, `name: must be "global" or "label:KEY=VALUE"`},
		{[]string{"budget", "set", "global", "--tokens", "5", "--window", "2w"}, "window: must be a duration"},
		{[]string{"cron", "add", "bad", "--schedule", "*/5 * * 13 *", "--", "true"}, "schedule: 13 is out of range (limit 12) at position 9"},
		{[]string{"cron", "add", "bad", "--schedule", "@daily", "--zone", "Moon/Base", "--", "true"}, "zone: unknown time zone"},
		{[]string{"cron", "add", "bad", "--schedule", "@daily", "--overlap", "whenever", "--", "true"}, "overlap: must be skip, queue or allow"},
	} {
		r := e.oxios(c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.msg) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: %s", c.args, r)
		}
	}
}

// getJSON runs the CLI command args with -o json and decodes what it
// prints.
func getJSON[T any](t *testing.T, e *env, args ...string) T {
	t.Helper()
	r := e.oxios(append(args, "-o", "json")...)
	var v T
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
		t.Fatalf("%v: %s", args, r)
	}
	return v
}

func budgetOf(t *testing.T, e *env, name string) oxios.BudgetStatus {
	t.Helper()
	return getJSON[oxios.BudgetStatus](t, e, "budget", "get", name)
}

func cronJob(t *testing.T, e *env, name string) oxios.CronStatus {
	t.Helper()
	return getJSON[oxios.CronStatus](t, e, "cron", "get", name)
}

// firedAfter waits for a firing of the job name after after whose agent
// succeeded.
func firedAfter(t *testing.T, e *env, name string, after time.Time) oxios.CronStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j := cronJob(t, e, name)
		if len(j.Recent) > 0 && j.Recent[0].At.After(after) && j.Recent[0].State == "succeeded" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not fire after %s: %+v", name, after, j.Recent)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
