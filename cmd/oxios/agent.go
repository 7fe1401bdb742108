package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Spawn, list, wait for, kill and restart agents",
		Long: `An agent is one supervised unit of work with an id. Process agents are OS
processes: each runs in its own process group with its own workspace, its
output goes to a rotated log, and a restart policy brings it back with
exponential backoff when it exits.`,
		Example: `  oxios agent spawn --name web --restart always -- python3 agent.py
  oxios agent list --state running
  oxios agent logs -f 0193e2a4-...
  oxios agent wait 0193e2a4-... --timeout 5m
  oxios agent kill 0193e2a4-...`,
		Args: noArgs,
	}
	cmd.AddCommand(a.agentSpawnCmd(), a.agentListCmd(), a.agentGetCmd(), a.agentWaitCmd(),
		a.agentKillCmd(), a.agentRestartCmd(), a.agentLogsCmd(), a.agentOutputCmd(), a.agentRmCmd())
	return cmd
}

func (a *app) agentOutputCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "output ID",
		Short: "Print the whole output of an llm agent",
		Long: `Output prints an llm agent's whole final answer (or, while it runs, its latest
text). Its record (agent get) holds only the first 64 KiB of it.`,
		Example: "  oxios agent output 0193e2a4-...\n  oxios agent output 0193e2a4-... > answer.md",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := a.printOutput(c, args[0]); err != nil {
				return apiError(err)
			}
			return nil
		},
	}
}

// printOutput writes agent id's whole output to stdout, ending in a newline.
func (a *app) printOutput(c *client.Client, id string) error {
	w := &lastByte{w: a.stdout}
	if _, err := c.AgentOutput(context.Background(), id, w); err != nil {
		return err
	}
	if w.last != 0 && w.last != '\n' {
		fmt.Fprintln(a.stdout)
	}
	return nil
}

// lastByte is a writer that remembers the last byte written.
type lastByte struct {
	w    io.Writer
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.last = p[len(p)-1]
	}
	return l.w.Write(p)
}

// spawnFlags are agent spawn's flags.
type spawnFlags struct {
	spec              oxios.Spec
	env, labels       []string
	wait              bool
	policy, window    string
	backoffInit, bMax string
	resetAfter        string
	maxRestarts       int
	dir               string
	kind, goal        string
	llm               llmFlags
	sb                sandboxFlags
	secretEnv         []string
}

func (a *app) agentSpawnCmd() *cobra.Command {
	var sf spawnFlags
	cmd := &cobra.Command{
		Use:   "spawn [flags] -- COMMAND [ARG...]",
		Short: "Start a process agent",
		Long: `Spawn persists the agent, queues it with the scheduler and prints its id
at once; the agent starts when the scheduler admits it. With --wait, the
command waits for the agent to end and exits like 'oxios agent wait'.

The agent's environment is --env and --secret-env plus PATH, HOME, LANG,
TMPDIR, OXIOS_AGENT_ID and OXIOS_URL; nothing else of the daemon's
environment reaches it. Without --dir it runs in its own workspace,
$OXIOS_HOME/workspaces/<id>. It runs in a sandbox (see the README's
"Sandbox"): --sandbox, --network, --read, --write and the limits narrow
the configured one; widening it needs the admin role.`,
		Example: `  oxios agent spawn --name web --restart always -- python3 agent.py
  oxios agent spawn --restart on-failure --max-restarts 3 --env MODE=fast -- ./worker.sh
  oxios agent spawn --timeout 10m --priority high --label team=search --wait -- make index
  oxios agent spawn --network none --memory-mb 512 --max-procs 64 --secret-env API_KEY -- python3 job.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if sf.kind == oxios.KindLLM {
				if len(args) > 0 {
					return usageError("an llm agent takes --goal, not a command (got %q)", args[0])
				}
				return nil
			}
			if len(args) == 0 {
				return usageError("agent spawn needs a command after -- (for example: oxios agent spawn -- python3 agent.py)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.spawnProcess(cmd, &sf, args) },
	}
	sf.add(cmd.Flags())
	return cmd
}

func (sf *spawnFlags) add(f *pflag.FlagSet) {
	spec, llm := &sf.spec, &sf.llm
	f.StringVar(&spec.Name, "name", "", "name of the agent (default: the command's base name)")
	f.StringArrayVarP(&sf.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVar(&sf.dir, "dir", "", "working directory (default: the agent's own workspace)")
	f.StringVar(&spec.Priority, "priority", "", "critical, high, normal or low (default: normal)")
	f.StringArrayVarP(&sf.labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	f.StringVar(&sf.policy, "restart", "", "restart policy: never, on-failure or always (default: never)")
	f.IntVar(&sf.maxRestarts, "max-restarts", 0, "restarts allowed within --restart-window before the agent fails (default: 5)")
	f.StringVar(&sf.window, "restart-window", "", "window of --max-restarts (default: 1m)")
	f.StringVar(&sf.backoffInit, "backoff", "", "delay before the second consecutive restart; it doubles after that (default: 100ms)")
	f.StringVar(&sf.bMax, "backoff-max", "", "longest delay between restarts (default: 30s)")
	f.StringVar(&sf.resetAfter, "reset-after", "", "uptime after which a run counts as stable and the backoff starts over (default: 30s)")
	f.StringVar(&spec.StopSignal, "stop-signal", "", "signal sent to the process group on kill, before SIGKILL (default: SIGTERM)")
	f.StringVar(&spec.StopTimeout, "stop-timeout", "", "grace between the stop signal and SIGKILL (default: agents.stop_timeout)")
	f.StringVar(&spec.Timeout, "timeout", "", "end each run after this long (default: none for a process agent, agent.timeout for an llm agent; 0s: none)")
	f.BoolVar(&sf.wait, "wait", false, "wait for the agent to end; exit 0 if it succeeded, 1 if it failed, 3 if it was killed")
	f.StringVar(&sf.kind, "kind", "", "process or llm (default: process)")
	f.StringVar(&sf.goal, "goal", "", "the goal of an llm agent")
	f.StringVarP(&llm.model, "model", "m", "", "llm: provider/model (default: agent.default_model)")
	f.StringVar(&llm.system, "system", "", "llm: instructions added to the built-in system prompt")
	f.IntVar(&llm.maxSteps, "max-steps", 0, "llm: most model calls (default: agent.max_steps)")
	f.StringSliceVar(&llm.allowExec, "allow-exec", nil, "llm: programs the exec tool may run")
	f.StringSliceVar(&llm.allowHost, "allow-host", nil, "llm: hosts http_fetch may reach")
	f.StringSliceVar(&llm.allowPath, "allow-path", nil, "llm: path globs the file tools may touch (default: the workspace)")
	f.StringArrayVar(&sf.secretEnv, "secret-env", nil, "variable NAME whose value is read from $OXIOS_HOME/secrets/env/NAME at each start (repeatable)")
	sf.sb.flags(f)
}

// spawnProcess spawns the agent agent spawn's flags describe.
func (a *app) spawnProcess(cmd *cobra.Command, sf *spawnFlags, args []string) error {
	spec := sf.spec
	spec.Sandbox = sf.sb.spec(cmd)
	spec.SecretEnv = sf.secretEnv
	switch sf.kind {
	case oxios.KindLLM:
		return a.spawnLLM(cmd, sf.goal, sf.llm, spec, sf.wait)
	case "", oxios.KindProcess:
	default:
		return usageError("--kind: must be process or llm (got %q)", sf.kind)
	}
	if sf.goal != "" {
		return usageError("--goal is for llm agents (add --kind llm)")
	}
	spec.Kind = oxios.KindProcess
	spec.Command, spec.Args = args[0], args[1:]
	spec.Restart = oxios.Restart{Policy: sf.policy, MaxRestarts: sf.maxRestarts, Window: sf.window,
		ResetAfter: sf.resetAfter, Backoff: oxios.BackoffSpec{Initial: sf.backoffInit, Max: sf.bMax}}
	var err error
	if spec.Env, err = keyValues("--env", sf.env); err != nil {
		return err
	}
	if spec.Labels, err = keyValues("--label", sf.labels); err != nil {
		return err
	}
	if sf.dir != "" {
		if spec.Dir, err = filepath.Abs(sf.dir); err != nil {
			return usageError("--dir: %v", err)
		}
	} else if here, why := callersDir(spec.Command, spec.Args); here != "" {
		// python3 agent.py, ./worker.sh: meant from here, as a shell (and
		// PM2) would run them.
		spec.Dir = here
		fmt.Fprintf(a.stderr, "dir: %s (%s is here; --dir to choose another)\n", here, why)
	}
	return a.spawn(spec, sf.wait)
}

// sandboxFlags are agent spawn's sandbox flags.
type sandboxFlags struct {
	mode, network                      string
	read, write                        []string
	memory, cpu, files, procs, fileMax int64
}

func (s *sandboxFlags) flags(f *pflag.FlagSet) {
	f.StringVar(&s.mode, "sandbox", "", "sandbox mode: enforce, best_effort or off (default: sandbox.mode)")
	f.StringVar(&s.network, "network", "", "network: none, loopback or any (default: any for process agents, none for exec)")
	f.StringArrayVar(&s.read, "read", nil, "absolute path the agent may also read (repeatable)")
	f.StringArrayVar(&s.write, "write", nil, "absolute path the agent may also write (repeatable)")
	f.Int64Var(&s.memory, "memory-mb", 0, "memory limit in MiB (RLIMIT_DATA; default: sandbox.limits)")
	f.Int64Var(&s.cpu, "cpu-seconds", 0, "CPU time limit in seconds")
	f.Int64Var(&s.files, "open-files", 0, "open files limit")
	f.Int64Var(&s.procs, "max-procs", 0, "processes (and threads) limit")
	f.Int64Var(&s.fileMax, "file-size-mb", 0, "largest file it may write, in MiB")
}

// spec is the sandbox the flags ask for, nil when none was given.
func (s *sandboxFlags) spec(cmd *cobra.Command) *oxios.SandboxSpec {
	given := false
	for _, n := range []string{"sandbox", "network", "read", "write", "memory-mb", "cpu-seconds", "open-files", "max-procs", "file-size-mb"} {
		given = given || cmd.Flags().Changed(n)
	}
	if !given {
		return nil
	}
	abs := func(l []string) []string {
		for i, p := range l {
			if a, err := filepath.Abs(p); err == nil {
				l[i] = a
			}
		}
		return l
	}
	return &oxios.SandboxSpec{Mode: s.mode, Network: s.network, Read: abs(s.read), Write: abs(s.write),
		Limits: oxios.SandboxLimits{MemoryMB: s.memory, CPUSeconds: s.cpu, OpenFiles: s.files, Processes: s.procs, FileSizeMB: s.fileMax}}
}

// spawnLLM spawns an llm agent from agent spawn's flags.
func (a *app) spawnLLM(cmd *cobra.Command, goal string, f llmFlags, base oxios.Spec, wait bool) error {
	if goal == "" {
		return usageError("--goal: an llm agent needs a goal")
	}
	f.name, f.priority = base.Name, base.Priority
	if base.Timeout != "" {
		f.timeout = base.Timeout
	}
	if dir, _ := cmd.Flags().GetString("dir"); dir != "" {
		f.workspace = dir
	}
	spec, err := f.spec(goal)
	if err != nil {
		return err
	}
	spec.Sandbox = base.Sandbox // for its exec tool's programs
	if ls, _ := cmd.Flags().GetStringArray("label"); len(ls) > 0 {
		if spec.Labels, err = keyValues("--label", ls); err != nil {
			return err
		}
	}
	return a.spawn(spec, wait)
}

// spawn spawns spec and prints its id (and queue position), or waits for
// it to end with --wait.
func (a *app) spawn(spec oxios.Spec, wait bool) error {
	if a.spawnF != nil {
		return a.spawnF(spec, wait)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	r, err := c.Spawn(context.Background(), spec)
	if err != nil {
		return apiError(err)
	}
	if wait {
		return a.waitFor(c, r.ID, 0)
	}
	if a.output == "json" {
		return printJSON(a.stdout, r)
	}
	if r.State == oxios.Queued && r.QueuePosition > 0 {
		fmt.Fprintf(a.stdout, "%s\t%s (position %d)\n", r.ID, r.QueueReason, r.QueuePosition)
	} else {
		fmt.Fprintln(a.stdout, r.ID)
	}
	return nil
}

// keyValues parses repeated KEY=VALUE flags.
func keyValues(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("%s: must be KEY=VALUE (got %q)", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) agentListCmd() *cobra.Command {
	var f client.AgentFilter
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agents, newest first",
		Example: `  oxios agent list
  oxios agent list --state running,backoff --label team=search
  oxios agent list -o json --limit 1000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var items []oxios.Record
			for {
				page, next, err := c.Agents(context.Background(), f)
				if err != nil {
					return apiError(err)
				}
				items = append(items, page...)
				if !all || next == "" {
					break
				}
				f.Cursor = next
			}
			if items == nil {
				items = []oxios.Record{}
			}
			if a.output == "json" {
				return printJSON(a.stdout, items)
			}
			if len(items) == 0 {
				fmt.Fprintln(a.stderr, "no agents")
				return nil
			}
			col := newColors(a.stdout)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATE\tPID\tRESTARTS\tAGE\tREASON")
			for _, r := range items {
				pid := "-"
				if r.PID > 0 {
					pid = strconv.Itoa(r.PID)
				}
				reason := r.Reason
				if r.QueueReason != "" {
					reason = r.QueueReason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Name, paintState(col, r.State), pid, r.Restarts, age(r.CreatedAt), reason)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.States, "state", nil, "only these states (comma-separated): queued, starting, running, backoff, succeeded, failed, killed")
	fl.StringVar(&f.Kind, "kind", "", "only this kind: process or llm")
	fl.StringVar(&f.Name, "name", "", "only agents with this name")
	fl.StringArrayVarP(&f.Labels, "label", "l", nil, "only agents with label KEY=VALUE (repeatable)")
	fl.IntVar(&f.Limit, "limit", 100, "at most this many agents (1 to 1000)")
	fl.BoolVar(&all, "all", false, "every agent, page after page")
	return cmd
}

func paintState(c colors, s oxios.State) string {
	switch s {
	case oxios.Running, oxios.Succeeded:
		return c.green(string(s))
	case oxios.Failed:
		return c.red(string(s))
	case oxios.Backoff, oxios.Killed, oxios.Queued:
		return c.yellow(string(s))
	}
	return string(s)
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func (a *app) agentGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show an agent's record",
		Example: "  oxios agent get 0193e2a4-...\n  oxios agent get 0193e2a4-... -o json",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Agent(context.Background(), args[0])
			if err != nil {
				return apiError(err)
			}
			a.printRecord(r)
			return nil
		},
	}
}

func (a *app) printRecord(r oxios.Record) {
	if a.output == "json" {
		printJSON(a.stdout, r)
		return
	}
	col := newColors(a.stdout)
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format(time.RFC3339)
	}
	exit := "-"
	if r.ExitCode != nil {
		exit = strconv.Itoa(*r.ExitCode)
	} else if r.Signal != "" {
		exit = r.Signal
	}
	rows := [][2]string{
		{"ID", r.ID}, {"Name", r.Name}, {"Kind", r.Kind}, {"State", paintState(col, r.State)},
		{"Reason", r.Reason}, {"PID", strconv.Itoa(r.PID)}, {"Restarts", strconv.Itoa(r.Restarts)},
		{"Exit", exit}, {"Created", ts(&r.CreatedAt)}, {"Started", ts(r.StartedAt)}, {"Ended", ts(r.EndedAt)},
	}
	if r.QueuePosition > 0 {
		rows = append(rows, [2]string{"Queue position", strconv.Itoa(r.QueuePosition) + ", " + r.QueueReason})
	}
	if r.NextStartAt != nil {
		rows = append(rows, [2]string{"Next start", ts(r.NextStartAt)})
	}
	rows = append(rows, sandboxRows(r)...)
	if r.Kind == oxios.KindLLM {
		cost := "-"
		if r.Usage.CostUSD != nil {
			cost = fmt.Sprintf("$%.4f", *r.Usage.CostUSD)
		}
		rows = append(rows, [2]string{"Goal", r.Spec.Goal}, [2]string{"Model", r.Spec.Model}, [2]string{"Dir", r.Spec.Dir},
			[2]string{"Steps", fmt.Sprintf("%d of %d", r.Steps, r.Spec.MaxSteps)},
			[2]string{"Tokens", fmt.Sprintf("%d in, %d out", r.Usage.TokensIn, r.Usage.TokensOut)},
			[2]string{"Cost", cost}, [2]string{"Tool calls", strconv.FormatInt(r.Usage.ToolCalls, 10)})
		printFields(a.stdout, rows)
		for _, tc := range r.ToolCalls {
			status := ""
			if tc.Denied {
				status = " denied"
			} else if tc.Error != "" {
				status = " error"
			}
			fmt.Fprintf(a.stdout, "  %d. %s %s%s (%dms)\n", tc.Step, tc.Name, truncateArgs(tc.Args), status, tc.DurationMS)
		}
		if r.Output != "" {
			fmt.Fprintf(a.stdout, "\n%s\n", r.Output)
		}
		if r.OutputTruncated {
			fmt.Fprintf(a.stdout, "[the first %d of %d bytes; the whole: oxios agent output %s]\n", len(r.Output), r.OutputBytes, r.ID)
		}
		return
	}
	cmdline := strings.Join(append([]string{r.Spec.Command}, r.Spec.Args...), " ")
	rows = append(rows, [2]string{"Command", cmdline}, [2]string{"Dir", r.Spec.Dir},
		[2]string{"Restart", fmt.Sprintf("%s (max %d in %s)", r.Spec.Restart.Policy, r.Spec.Restart.MaxRestarts, r.Spec.Restart.Window)},
		[2]string{"Priority", r.Spec.Priority})
	printFields(a.stdout, rows)
}

func (a *app) agentWaitCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for an agent to end",
		Long: `Wait blocks until the agent ends and prints its record. Exit status:
0 the agent succeeded, 1 it failed, 3 it was killed, 124 --timeout passed first.`,
		Example: "  oxios agent wait 0193e2a4-...\n  oxios agent wait 0193e2a4-... --timeout 5m -o json",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usageError("--timeout: must not be negative (got %s)", timeout)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.waitFor(c, args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	return cmd
}

// waitFor waits for agent id to end (timeout 0: for ever) and exits by
// its outcome: 0 succeeded, 1 failed, 3 killed, 124 timed out.
func (a *app) waitFor(c *client.Client, id string, timeout time.Duration) error {
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx := interrupted
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	sp := newSpinner(a.stderr, "waiting for "+id)
	start := time.Now()
	var r oxios.Record
	for {
		step := 2 * time.Second
		if !sp.on {
			step = 5 * time.Minute // no progress to draw: fewer, longer calls
		}
		if dl, ok := ctx.Deadline(); ok {
			step = min(step, max(time.Until(dl), time.Millisecond))
		}
		var err error
		called := time.Now()
		r, err = c.Wait(ctx, id, step)
		if err == nil && !r.State.Terminal() && time.Since(called) < step/2 {
			// The daemon answered early without an end (it is shutting
			// down, say): do not ask again at once.
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		if err != nil {
			sp.done()
			if ctx.Err() != nil {
				break
			}
			return apiError(err)
		}
		sp.tick(time.Since(start))
		if r.State.Terminal() || ctx.Err() != nil {
			break
		}
	}
	sp.done()
	if interrupted.Err() != nil {
		// Waiting ends, the agent does not: say so, and how to stop it.
		fmt.Fprintf(a.stderr, "stopped waiting; agent %s keeps running (oxios agent kill %s stops it)\n", id, id)
		return &exitError{code: exitInterrupted}
	}
	if !r.State.Terminal() {
		if r.ID == "" {
			r, _ = c.Agent(context.Background(), id)
		}
		if a.output == "json" {
			printJSON(a.stdout, r)
		}
		return &exitError{code: exitTimeout, err: fmt.Errorf("agent %s is still %s after %s", id, r.State, time.Since(start).Round(time.Millisecond))}
	}
	if a.output == "json" {
		printJSON(a.stdout, r)
	} else {
		fmt.Fprintf(a.stdout, "%s %s", id, paintState(newColors(a.stdout), r.State))
		if r.Reason != "" {
			fmt.Fprintf(a.stdout, " (%s)", r.Reason)
		}
		fmt.Fprintln(a.stdout)
	}
	switch r.State {
	case oxios.Succeeded:
		return nil
	case oxios.Killed:
		return &exitError{code: exitKilled}
	default:
		return &exitError{code: exitFailure}
	}
}

func (a *app) agentKillCmd() *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "kill ID...",
		Short: "Stop agents (a queued agent is cancelled)",
		Long: `Kill sends the agent's stop signal (SIGTERM unless its spec says otherwise)
to its whole process group, then SIGKILL after the grace period, and waits
until it has ended. A killed agent ends 'killed' and is not restarted.`,
		Example: "  oxios agent kill 0193e2a4-...\n  oxios agent kill --grace 0s 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("grace") && grace < 0 {
				return usageError("--grace: must not be negative (got %s)", grace)
			}
			if !cmd.Flags().Changed("grace") {
				grace = -1
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				r, err := c.Kill(context.Background(), id, grace)
				if err != nil {
					return err
				}
				return a.report(r, "%s %s\n", id, r.State)
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "time between the stop signal and SIGKILL (default: the agent's stop_timeout)")
	return cmd
}

// agentIDs requires at least one agent ID.
func agentIDs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageError("%s needs at least one agent ID", cmd.CommandPath())
	}
	return nil
}

// each runs fn for every id, reports every failure, and fails if any did.
func (a *app) each(ids []string, fn func(id string) error) error {
	var last error
	for _, id := range ids {
		if err := fn(id); err != nil {
			last = apiError(err)
			if len(ids) > 1 {
				fmt.Fprintf(a.stderr, "oxios: %s: %v\n", id, err)
			}
		}
	}
	if last != nil && len(ids) > 1 {
		var ee *exitError
		if e, ok := last.(*exitError); ok {
			ee = e
		}
		return &exitError{code: ee.code}
	}
	return last
}

// report prints a record as JSON, or the formatted line for people.
func (a *app) report(r oxios.Record, format string, args ...any) error {
	if a.output == "json" {
		return printJSON(a.stdout, r)
	}
	fmt.Fprintf(a.stdout, format, args...)
	return nil
}

func (a *app) agentRestartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restart ID...",
		Short: "Restart agents",
		Long: `A running agent is stopped and started again at once; an ended one starts
a new run through the scheduler. Manual restarts are not counted in
'restarts' and reset the backoff.`,
		Example: "  oxios agent restart 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				r, err := c.Restart(context.Background(), id)
				if err != nil {
					return err
				}
				return a.report(r, "%s restarting\n", id)
			})
		},
	}
}

func (a *app) agentRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID...",
		Short:   "Delete ended agents with their logs and own workspaces",
		Example: "  oxios agent rm 0193e2a4-...",
		Args:    agentIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.each(args, func(id string) error {
				if err := c.DeleteAgent(context.Background(), id); err != nil {
					return err
				}
				if a.output != "json" {
					fmt.Fprintf(a.stdout, "%s deleted\n", id)
				}
				return nil
			})
		},
	}
}

func (a *app) agentLogsCmd() *cobra.Command {
	var (
		n      int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an agent's output (stdout and stderr)",
		Long: `Logs prints the last lines of the agent's log. With -f it keeps printing new
lines until the agent ends (or Ctrl-C).`,
		Example: "  oxios agent logs 0193e2a4-...\n  oxios agent logs -f -n 20 0193e2a4-...",
		Args:    exactArgs(1, "an agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("--lines: must not be negative (got %d)", n)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if !follow {
				lines, err := c.AgentLogs(context.Background(), args[0], n)
				if err != nil {
					return apiError(err)
				}
				if a.output == "json" {
					return printJSON(a.stdout, lines)
				}
				for _, l := range lines {
					fmt.Fprintln(a.stdout, l)
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			err = c.FollowAgentLogs(ctx, args[0], n, func(l string) error {
				_, err := io.WriteString(a.stdout, l+"\n")
				return err
			})
			if err != nil && ctx.Err() == nil {
				return apiError(err)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 100, "how many of the last lines to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the agent ends")
	return cmd
}

func (a *app) schedulerCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "scheduler",
		Short:   "Show the scheduler's limits, running agents and queue",
		Example: "  oxios scheduler\n  oxios scheduler -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.Scheduler(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, s)
			}
			rate := "no limit"
			if s.Limits.SpawnsPerMinute > 0 {
				rate = fmt.Sprintf("%d per minute", s.Limits.SpawnsPerMinute)
			}
			rows := [][2]string{
				{"Running", fmt.Sprintf("%d of %d", s.Running, s.Limits.MaxRunning)},
				{"Running LLM", fmt.Sprintf("%d of %d", s.RunningLLM, s.Limits.MaxRunningLLM)},
				{"Spawn rate", rate},
				{"Queued", strconv.Itoa(s.QueuedTotal)},
			}
			for _, q := range s.Queued {
				if len(q.IDs) > 0 {
					rows = append(rows, [2]string{"  " + q.Priority, strings.Join(q.IDs, " ")})
				}
			}
			printFields(a.stdout, rows)
			return nil
		},
	}
}

// sandboxRows describe the sandbox the agent got at its latest start.
func sandboxRows(r oxios.Record) [][2]string {
	sb := r.Sandbox
	if sb == nil {
		return nil
	}
	if sb.Mode == "off" {
		return [][2]string{{"Sandbox", "off"}}
	}
	abi := "no Landlock"
	if sb.Landlock > 0 {
		abi = "Landlock ABI " + strconv.Itoa(sb.Landlock)
	}
	network := sb.Network
	if sb.NetworkBy != "" {
		network += " (by " + sb.NetworkBy + ")"
	}
	l := sb.Limits
	var lim []string
	for _, x := range []struct {
		name string
		v    int64
		unit string
	}{{"memory", l.MemoryMB, " MiB"}, {"CPU", l.CPUSeconds, " s"}, {"files", l.OpenFiles, ""}, {"processes", l.Processes, ""}, {"file size", l.FileSizeMB, " MiB"}} {
		if x.v > 0 {
			lim = append(lim, fmt.Sprintf("%s %d%s", x.name, x.v, x.unit))
		}
	}
	rows := [][2]string{{"Sandbox", sb.Mode + ", " + abi}, {"Network", network}, {"Writes", strings.Join(sb.Write, ", ")}, {"Limits", strings.Join(lim, ", ")}}
	for _, u := range sb.Unenforced {
		rows = append(rows, [2]string{"Not enforced", u})
	}
	return rows
}

// callersDir is the caller's working directory when the command or an
// argument is a relative path to something in it, and that path.
func callersDir(command string, args []string) (string, string) {
	here, err := os.Getwd()
	if err != nil {
		return "", ""
	}
	for _, p := range append([]string{command}, args...) {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "-") || (p == command && !strings.Contains(p, "/")) {
			continue
		}
		if _, err := os.Stat(filepath.Join(here, p)); err == nil {
			return here, p
		}
	}
	return "", ""
}
