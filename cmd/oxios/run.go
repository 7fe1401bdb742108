package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

// llmFlags are the flags that shape an llm agent's spec.
type llmFlags struct {
	model, system, workspace, timeout, name, priority string
	maxSteps                                          int
	allowExec, allowHost, allowPath                   []string
}

func (f *llmFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "provider/model, e.g. openai/gpt-4.1-mini or anthropic/claude-sonnet-4-5 (default: agent.default_model)")
	fl.StringVar(&f.system, "system", "", "instructions added to the built-in system prompt")
	fl.StringVarP(&f.workspace, "workspace", "w", "", "directory the agent works in (default: its own new workspace)")
	fl.IntVar(&f.maxSteps, "max-steps", 0, "most model calls (default: agent.max_steps)")
	fl.StringVar(&f.timeout, "timeout", "", "longest run (default: agent.timeout)")
	fl.StringSliceVar(&f.allowExec, "allow-exec", nil, "programs the exec tool may run, comma-separated (default: none)")
	fl.StringSliceVar(&f.allowHost, "allow-host", nil, "hosts http_fetch may reach, comma-separated (default: none)")
	fl.StringSliceVar(&f.allowPath, "allow-path", nil, "path globs the file tools may touch (default: the workspace)")
	fl.StringVar(&f.name, "name", "", "name of the agent (default: llm)")
	fl.StringVar(&f.priority, "priority", "", "critical, high, normal or low")
}

// spec builds the llm spec; only the policy lists that were given are set,
// so the configured defaults hold for the others.
func (f *llmFlags) spec(goal string) (oxios.Spec, error) {
	s := oxios.Spec{Kind: oxios.KindLLM, Goal: goal, Model: f.model, System: f.system, MaxSteps: f.maxSteps,
		Timeout: f.timeout, Name: f.name, Priority: f.priority}
	if f.workspace != "" {
		abs, err := filepath.Abs(f.workspace)
		if err != nil {
			return s, usageError("--workspace: %v", err)
		}
		s.Dir = abs
	}
	if f.allowExec != nil || f.allowHost != nil || f.allowPath != nil {
		s.Policy = &oxios.Policy{}
		s.Policy.Exec.Allow = f.allowExec
		s.Policy.Network.Allow = f.allowHost
		s.Policy.Paths.Allow = f.allowPath
	}
	return s, nil
}

func (a *app) runCmd() *cobra.Command {
	var f llmFlags
	cmd := &cobra.Command{
		Use:   "run GOAL",
		Short: "Work a goal with a language-model agent and print its answer",
		Long: `Run spawns an llm agent on GOAL and follows it: one line per tool call on
stderr, then the final answer on stdout. It exits 0 when the agent
succeeded and 1 when it failed; Ctrl-C kills the agent (exit 130).

The agent's tools may touch only its workspace, and run no program and
reach no host unless allowed (--allow-exec, --allow-host, or the [policy]
section of config.toml). Keys come from OPENAI_API_KEY / ANTHROPIC_API_KEY
in the daemon's environment or from config.toml.`,
		Example: `  oxios run "Summarise README.md into SUMMARY.md" --workspace .
  oxios run "Run the tests and fix what fails" -w . --allow-exec go,git --max-steps 80
  oxios run "What is 2+2?" --model anthropic/claude-sonnet-4-5 -o json`,
		Args: exactArgs(1, "a goal"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			rec, err := c.Spawn(context.Background(), spec)
			if err != nil {
				return apiError(err)
			}
			return a.follow(c, rec.ID)
		},
	}
	f.add(cmd)
	return cmd
}

// errEnded stops the event stream once the agent has ended.
var errEnded = errors.New("ended")

// follow prints an llm agent's tool calls as they finish, then its answer,
// and exits by its outcome. Ctrl-C kills the agent.
func (a *app) follow(c *client.Client, id string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	col := newColors(a.stderr)
	args := map[string]string{}
	zero := uint64(0)
	var last uint64
	for {
		since := zero
		if last > 0 {
			since = last
		}
		var err error
		last, err = c.Events(ctx, client.EventsOptions{Agent: id, Since: &since, Follow: true}, func(ev oxios.Event) error {
			var d map[string]any
			json.Unmarshal(ev.Data, &d)
			switch ev.Type {
			case "tool.started":
				args[fmt.Sprint(d["call_id"])] = fmt.Sprint(d["args"])
			case "tool.finished":
				mark, status := col.green("✓"), ""
				if d["denied"] == true {
					mark, status = col.red("✗"), " denied"
				} else if d["error"] == true {
					mark, status = col.yellow("!"), " error"
				}
				fmt.Fprintf(a.stderr, "%s %s %s%s (%vms)\n", mark, d["tool"], truncateArgs(args[fmt.Sprint(d["call_id"])]), status, d["duration_ms"])
			case "approval.requested":
				// The run is waiting on a human: say who, for what, and how.
				fmt.Fprintf(a.stderr, "%s %s %s waits for approval %s: oxios approvals approve %s (or reject)\n",
					col.yellow("?"), d["tool"], truncateArgs(fmt.Sprint(d["args"])), d["id"], d["id"])
			case "agent.succeeded", "agent.failed", "agent.killed":
				return errEnded
			}
			return nil
		})
		if errors.Is(err, errEnded) {
			break
		}
		if ctx.Err() != nil {
			kctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if r, kerr := c.Kill(kctx, id, 0); kerr == nil {
				fmt.Fprintf(a.stderr, "\nagent %s %s\n", id, r.State)
			}
			return &exitError{code: exitInterrupted}
		}
		if err != nil {
			return failure(err)
		}
		// The stream ended without the end of the agent (the daemon
		// restarted?): resume after the last event seen.
		time.Sleep(200 * time.Millisecond)
	}
	r, err := c.Agent(context.Background(), id)
	if err != nil {
		return apiError(err)
	}
	if a.output == "json" {
		printJSON(a.stdout, r)
	} else if r.OutputTruncated {
		if err := a.printOutput(c, id); err != nil {
			return apiError(err)
		}
	} else if r.Output != "" {
		fmt.Fprint(a.stdout, r.Output)
		if !strings.HasSuffix(r.Output, "\n") {
			fmt.Fprintln(a.stdout)
		}
	}
	switch r.State {
	case oxios.Succeeded:
		return nil
	case oxios.Killed:
		return &exitError{code: exitKilled, err: fmt.Errorf("agent %s was killed (%s)", id, r.Reason)}
	default:
		return &exitError{code: exitFailure, err: fmt.Errorf("agent %s failed: %s", id, r.Reason)}
	}
}

func truncateArgs(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
