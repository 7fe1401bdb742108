package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "The nodes of the cluster",
		Example: `  oxios node list
  oxios node list -o json
  oxios node drain n2
  oxios node undrain n2`,
		Args: noArgs,
	}
	cmd.AddCommand(a.nodeListCmd(), a.nodeDrainCmd(true), a.nodeDrainCmd(false))
	return cmd
}

// nodeDrainCmd is "node drain" (on) or "node undrain".
func (a *app) nodeDrainCmd(on bool) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "undrain NODE",
		Short: "Let agents be placed on a drained node again",
		Long: `Undrain lets new agents be placed on the node again. Agents moved away
while it was drained stay where they are.`,
		Example: "  oxios node undrain n2",
		Args:    exactArgs(1, "NODE"),
	}
	if on {
		cmd.Use, cmd.Short = "drain NODE", "Move a node's agents to the others and place none on it (maintenance)"
		cmd.Long = `Drain stops placing agents on the node and moves its agents to the other
nodes, one at a time: each is started on another node, then stopped on
this one within its stop timeout. It waits (up to --wait) until the node
runs no agent, showing how many are left, then prints the node. Agents
pinned to the node (placement.node) stay. Draining the last live node
that takes agents is refused. Needs the admin role.`
		cmd.Example = "  oxios node drain n2\n  oxios node drain n2 --wait 0   # do not wait"
		cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "wait this long for the node's agents to move (0: do not wait)")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		n, err := c.Drain(context.Background(), args[0], on)
		if err != nil {
			return apiError(err)
		}
		if on && wait > 0 {
			if err := a.awaitDrained(c, args[0], wait); err != nil {
				return err
			}
		}
		if a.output == "json" {
			return printJSON(a.stdout, n)
		}
		verb := "drained"
		if !on {
			verb = "undrained"
		}
		fmt.Fprintf(a.stdout, "node %s %s\n", n.Name, verb)
		return nil
	}
	return cmd
}

// awaitDrained waits until node runs no agent (or wait passes), saying how
// many are left when a person watches.
func (a *app) awaitDrained(c *client.Client, node string, wait time.Duration) error {
	live := []string{"queued", "starting", "running", "waiting_approval", "backoff"}
	deadline := time.Now().Add(wait)
	last := -1
	for {
		recs, _, err := c.Agents(context.Background(), client.AgentFilter{Node: node, States: live, Limit: 1000})
		if err != nil {
			return apiError(err)
		}
		if len(recs) == 0 {
			return nil
		}
		if len(recs) != last && isTerminal(a.stderr) {
			fmt.Fprintf(a.stderr, "draining %s: %d agents left\n", node, len(recs))
		}
		last = len(recs)
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s still runs %d agents after %s (pinned to it, or no other node matches their placement); see 'oxios agent list --node %s'", node, len(recs), wait, node)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (a *app) nodeListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the nodes: state, address, agents running, free slots",
		Long: `List every node of the cluster as the answering node sees it: alive (it
beats on time), suspect (it missed a beat), dead (silent for cluster.lease)
or left (stopped gracefully). Without a cluster it lists this node alone.`,
		Example: "  oxios node list\n  oxios node list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, nodes)
			}
			return printNodes(a.stdout, newColors(a.stdout), nodes)
		},
	}
}

// printNodes writes the nodes as a table; the answering node is marked *.
func printNodes(w io.Writer, col colors, nodes oxios.NodeList) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tRUNNING\tFREE\tVERSION\tUP\tLABELS")
	for _, n := range nodes.Items {
		name := n.Name
		if n.Name == nodes.Self {
			name += " *"
		}
		state := nodeState(col, n.State)
		if n.Drained {
			state += col.yellow(" (drained)")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", name, state, n.Address, n.Running, n.FreeSlots,
			n.Version, time.Since(n.StartedAt).Round(time.Second), labelList(n.Labels))
	}
	return tw.Flush()
}

func nodeState(col colors, s oxios.NodeState) string {
	switch s {
	case oxios.NodeAlive:
		return col.green(string(s))
	case oxios.NodeSuspect:
		return col.yellow(string(s))
	case oxios.NodeDead:
		return col.red(string(s))
	}
	return string(s)
}

func labelList(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
