package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oxios/oxios/internal/oxios"
)

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
	onNode, spread    string
	onLabels          []string
}

// placement is the spec's placement from --on-node, --on-label and --spread.
func (sf *spawnFlags) placement() (*oxios.Placement, error) {
	labels, err := keyValues("--on-label", sf.onLabels)
	if err != nil || (sf.onNode == "" && labels == nil && sf.spread == "") {
		return nil, err
	}
	return &oxios.Placement{Node: sf.onNode, Labels: labels, Spread: sf.spread}, nil
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
TMPDIR, OXIOS_AGENT_ID, OXIOS_NODE and OXIOS_URL; nothing else of the daemon's
environment reaches it. Without --dir it runs in its own workspace,
$OXIOS_HOME/workspaces/<id>. It runs in a sandbox (see the README's
"Sandbox"): --sandbox, --network, --read, --write and the limits narrow
the configured one; widening it needs the admin role.

On a cluster the agent runs on the node with the most free room, unless
--on-node, --on-label or --spread say otherwise; 'oxios agent get' shows
where it was placed and why.`,
		Example: `  oxios agent spawn --name web --restart always -- python3 agent.py
  oxios agent spawn --restart on-failure --max-restarts 3 --env MODE=fast -- ./worker.sh
  oxios agent spawn --timeout 10m --priority high --label team=search --wait -- make index
  oxios agent spawn --network none --memory-mb 512 --max-procs 64 --secret-env API_KEY -- python3 job.py
  oxios agent spawn --on-label gpu=yes --spread zone --name trainer -- ./train.sh`,
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
	f.StringVar(&sf.onNode, "on-node", "", "run on this node of the cluster (placement.node)")
	f.StringArrayVar(&sf.onLabels, "on-label", nil, "run on a node with this node label KEY=VALUE (placement.labels; repeatable)")
	f.StringVar(&sf.spread, "spread", "", "spread agents of this name over the values of this node label (placement.spread)")
	sf.sb.flags(f)
}

// spawnProcess spawns the agent agent spawn's flags describe.
func (a *app) spawnProcess(cmd *cobra.Command, sf *spawnFlags, args []string) error {
	spec := sf.spec
	spec.Sandbox = sf.sb.spec(cmd)
	spec.SecretEnv = sf.secretEnv
	var err error
	if spec.Placement, err = sf.placement(); err != nil {
		return err
	}
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
	spec.Placement = base.Placement
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
