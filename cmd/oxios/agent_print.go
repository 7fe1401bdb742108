package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

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
		{"ID", r.ID}, {"Name", r.Name}, {"Kind", r.Kind}, {"State", paintState(col, r.State)}, {"Node", r.Node},
		{"Reason", r.Reason}, {"PID", strconv.Itoa(r.PID)}, {"Restarts", strconv.Itoa(r.Restarts)},
		{"Exit", exit}, {"Created", ts(&r.CreatedAt)}, {"Started", ts(r.StartedAt)}, {"Ended", ts(r.EndedAt)},
	}
	if r.Placed != "" {
		rows = append(rows, [2]string{"Placed", r.Placed})
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
