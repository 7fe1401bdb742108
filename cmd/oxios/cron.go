package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) cronCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cron",
		Short: "Spawn agents on a schedule",
		Long: `A cron job spawns an agent (process or llm) on a schedule: a 5-field cron
expression ("*/15 * * * *"), a descriptor (@hourly, @daily, @weekly,
@monthly, @yearly) or an interval ("@every 30s"), in a time zone of its own
(default: the daemon's local time). Each firing goes through the scheduler,
so its limits and budgets apply, and its agent carries the label
oxios.cron=<job>.

While a job's previous run is active, --overlap skip drops the firing,
queue runs it once the previous run ends, allow runs it alongside. After
downtime, --missed skip waits for the next time, run-once fires once at
boot. Jobs of the config file ([cron.jobs.NAME]) are listed here but are
read-only.`,
		Example: `  oxios cron add backup --schedule "0 3 * * *" --zone Europe/Berlin -- /usr/local/bin/backup.sh
  oxios cron add digest --schedule @daily --kind llm --goal "Summarize yesterday's logs"
  oxios cron list
  oxios cron trigger backup`,
		Args: noArgs,
	}
	cmd.AddCommand(a.cronAddCmd(), a.cronListCmd(), a.cronGetCmd(), a.cronRmCmd(),
		a.cronEnableCmd(true), a.cronEnableCmd(false), a.cronTriggerCmd())
	return cmd
}

func (a *app) cronAddCmd() *cobra.Command {
	var cf cronFlags
	cmd := &cobra.Command{
		Use:   "add NAME --schedule EXPR [flags] [-- COMMAND [ARG...]]",
		Short: "Add a cron job",
		Long: `Add creates a job that spawns, at each firing, a process agent (the
command after --) or an llm agent (--kind llm --goal ...). Any other field
of an agent spec can be given as JSON with --spec FILE ("-": stdin); flags
override it.`,
		Example: `  oxios cron add backup --schedule "0 3 * * *" --zone Europe/Berlin --missed run-once -- /usr/local/bin/backup.sh
  oxios cron add ping --schedule "@every 30s" --overlap skip -- curl -fsS https://example.com/health
  oxios cron add digest --schedule @daily --kind llm --goal "Summarize the log" --on-exhausted wait
  oxios cron add nightly --schedule @daily --spec spec.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("cron add needs a job name (for example: oxios cron add backup --schedule @daily -- ./backup.sh)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.cronAdd(cmd, &cf, args) },
	}
	cf.add(cmd.Flags())
	return cmd
}

// cronFlags are cron add's flags.
type cronFlags struct {
	j                          client.CronJob
	disabled                   bool
	kind, goal, model, specArg string
	dir, onExhausted           string
	env, labels                []string
}

func (cf *cronFlags) add(f *pflag.FlagSet) {
	f.StringVarP(&cf.j.Schedule, "schedule", "s", "", `when: "MIN HOUR DOM MON DOW", @hourly, @daily, ... or "@every 30s"`)
	f.StringVar(&cf.j.Zone, "zone", "", "IANA time zone such as Europe/Berlin (default: local time)")
	f.StringVar(&cf.j.Overlap, "overlap", "", "while the previous run is active: skip, queue or allow (default: skip)")
	f.StringVar(&cf.j.Missed, "missed", "", "firings missed while the daemon was down: skip or run-once (default: skip)")
	f.BoolVar(&cf.disabled, "disabled", false, "add the job disabled")
	f.StringVar(&cf.kind, "kind", "", "process or llm (default: process)")
	f.StringVar(&cf.goal, "goal", "", "the goal of an llm agent")
	f.StringVarP(&cf.model, "model", "m", "", "llm: provider/model (default: agent.default_model)")
	f.StringVar(&cf.onExhausted, "on-exhausted", "", "llm: fail or wait when a budget is exhausted at a firing")
	f.StringVar(&cf.j.Spec.Name, "name", "", "name of the spawned agents (default: the job's name)")
	f.StringVar(&cf.j.Spec.Priority, "priority", "", "critical, high, normal or low")
	f.StringVar(&cf.j.Spec.Timeout, "timeout", "", "end each run after this long")
	f.StringVar(&cf.dir, "dir", "", "working directory (default: each agent's own workspace)")
	f.StringArrayVarP(&cf.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVarP(&cf.labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	f.StringVar(&cf.specArg, "spec", "", `agent spec as JSON, from a file or "-" for stdin`)
}

// cronAdd creates the job cron add's flags describe.
func (a *app) cronAdd(cmd *cobra.Command, cf *cronFlags, args []string) error {
	j, disabled, kind, goal, model, specArg := &cf.j, cf.disabled, cf.kind, cf.goal, cf.model, cf.specArg
	dir, onExhausted, env, labels := cf.dir, cf.onExhausted, cf.env, cf.labels
	j.Name = args[0]
	if j.Schedule == "" {
		return usageError("--schedule: required, e.g. \"*/5 * * * *\", @hourly or \"@every 30s\"")
	}
	if specArg != "" {
		var b []byte
		var err error
		if specArg == "-" {
			b, err = readAllStdin()
		} else {
			b, err = os.ReadFile(specArg)
		}
		if err != nil {
			return usageError("--spec: %v", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j.Spec); err != nil {
			return usageError("--spec: %v", err)
		}
	}
	f := cmd.Flags()
	if kind != "" {
		j.Spec.Kind = kind
	}
	if f.Changed("goal") {
		j.Spec.Goal = goal
	}
	if f.Changed("model") {
		j.Spec.Model = model
	}
	if onExhausted != "" {
		if j.Spec.Budget == nil {
			j.Spec.Budget = &oxios.SpecBudget{}
		}
		j.Spec.Budget.OnExhausted = onExhausted
	}
	if len(args) > 1 {
		if j.Spec.Kind == oxios.KindLLM {
			return usageError("an llm job takes --goal, not a command (got %q)", args[1])
		}
		j.Spec.Command, j.Spec.Args = args[1], args[2:]
		if strings.Contains(j.Spec.Command, "/") && !filepath.IsAbs(j.Spec.Command) {
			if abs, err := filepath.Abs(j.Spec.Command); err == nil {
				j.Spec.Command = abs
			}
		}
	}
	var err error
	if e, err := keyValues("--env", env); err != nil {
		return err
	} else if e != nil {
		j.Spec.Env = e
	}
	if l, err := keyValues("--label", labels); err != nil {
		return err
	} else if l != nil {
		j.Spec.Labels = l
	}
	if dir != "" {
		if j.Spec.Dir, err = filepath.Abs(dir); err != nil {
			return usageError("--dir: %v", err)
		}
	}
	if disabled {
		off := false
		j.Enabled = &off
	}
	if a.cronF != nil {
		return a.cronF(*j)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	st, err := c.CreateCron(context.Background(), *j)
	if err != nil {
		return apiError(err)
	}
	return a.printCron(st)
}

func readAllStdin() ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20+1))
	if err == nil && len(b) > 1<<20 {
		err = fmt.Errorf("more than 1 MiB on stdin")
	}
	return b, err
}

func (a *app) cronListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List cron jobs with their next and last runs",
		Example: "  oxios cron list\n  oxios cron list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			jobs, err := c.CronJobs(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, jobs)
			}
			if len(jobs) == 0 {
				fmt.Fprintln(a.stderr, `no cron jobs; add one with: oxios cron add NAME --schedule @hourly -- COMMAND`)
				return nil
			}
			col := newColors(a.stdout)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNODE\tSCHEDULE\tZONE\tNEXT\tLAST\tOUTCOME\tENABLED\tSOURCE")
			for _, j := range jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, j.Node, j.Schedule, zoneOf(j.Zone), when(j.NextRun), when(j.LastRun),
					outcome(col, j.LastOutcome), yesNo(j.Enabled), j.Source)
			}
			return tw.Flush()
		},
	}
}

func (a *app) cronGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a cron job and its recent runs",
		Example: "  oxios cron get backup\n  oxios cron get backup -o json",
		Args:    exactArgs(1, "a job name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.CronJob(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			return a.printCron(st)
		},
	}
}

func (a *app) cronRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Short:   "Remove a cron job (agents it spawned are left alone)",
		Example: "  oxios cron rm backup",
		Args:    exactArgs(1, "a job name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteCron(context.Background(), args[0]); err != nil {
				return apiError(err)
			}
			if a.output != "json" {
				fmt.Fprintf(a.stdout, "cron job %s removed\n", args[0])
			}
			return nil
		},
	}
}

func (a *app) cronEnableCmd(on bool) *cobra.Command {
	use, short := "disable NAME", "Stop a job from firing on its schedule (trigger still works)"
	if on {
		use, short = "enable NAME", "Let a job fire on its schedule again (missed firings are not caught up)"
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  oxios cron " + strings.Fields(use)[0] + " backup",
		Args:    exactArgs(1, "a job name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.SetCronEnabled(context.Background(), args[0], on)
			if err != nil {
				return apiError(err)
			}
			return a.printCron(st)
		},
	}
}

func (a *app) cronTriggerCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "trigger NAME",
		Short: "Fire a job now (its overlap policy applies) and print the agent id",
		Long: `Trigger fires a job now, whether or not it is enabled. It prints the id of
the agent it spawned; when the overlap policy skipped or queued the firing
it says so on stderr and exits 1. With --wait it waits for the agent to end
and exits like 'oxios agent wait'.`,
		Example: "  oxios cron trigger backup\n  oxios cron trigger backup --wait",
		Args:    exactArgs(1, "a job name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			run, err := c.TriggerCron(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" && !wait {
				if err := printJSON(a.stdout, run); err != nil {
					return err
				}
			}
			if run.Action != string(oxios.CronRun) {
				verb := map[string]string{"skip": "skipped", "queue": "queued"}[run.Action]
				return failure(fmt.Errorf("the firing was %s: the job's previous run is still active (overlap policy)", verb))
			}
			if a.output == "json" && !wait {
				return nil
			}
			if !wait {
				fmt.Fprintln(a.stdout, run.AgentID)
				return nil
			}
			return a.waitFor(c, run.AgentID, 0)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the spawned agent to end")
	return cmd
}

func (a *app) printCron(st oxios.CronStatus) error {
	if a.output == "json" {
		return printJSON(a.stdout, st)
	}
	col := newColors(a.stdout)
	what := st.Spec.Command + " " + strings.Join(st.Spec.Args, " ")
	if st.Spec.Kind == oxios.KindLLM {
		what = "llm: " + st.Spec.Goal
	}
	rows := [][2]string{
		{"Name", st.Name},
		{"Schedule", st.Schedule},
		{"Zone", zoneOf(st.Zone)},
		{"Spawns", strings.TrimSpace(what)},
		{"Overlap", st.Overlap},
		{"Missed", st.Missed},
		{"Enabled", yesNo(st.Enabled)},
		{"Source", st.Source},
		{"Node", st.Node},
		{"Next run", when(st.NextRun)},
		{"Last run", when(st.LastRun)},
		{"Last outcome", outcome(col, st.LastOutcome)},
	}
	if st.Error != "" {
		rows = append(rows, [2]string{"Error", col.red(st.Error)})
	}
	printFields(a.stdout, rows)
	if len(st.Recent) > 0 {
		fmt.Fprintln(a.stdout)
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tACTION\tAGENT\tSTATE")
		for _, r := range st.Recent {
			action := r.Action
			if r.Manual {
				action += " (manual)"
			}
			if r.Missed > 0 {
				action += fmt.Sprintf(" (catch-up of %d)", r.Missed)
			}
			state := r.State
			if r.Error != "" {
				state = r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", when(&r.At), action, dash(r.AgentID), outcome(col, state))
		}
		return tw.Flush()
	}
	return nil
}

func zoneOf(z string) string {
	if z == "" {
		return "local"
	}
	return z
}

// when shows a time in this machine's zone, with the zone's name.
func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func outcome(col colors, s string) string {
	switch {
	case s == "":
		return "-"
	case s == "succeeded":
		return col.green(s)
	case s == "failed" || s == "killed" || strings.HasPrefix(s, "error"):
		return col.red(s)
	case s == "skipped" || s == "queued":
		return col.yellow(s)
	}
	return s
}
