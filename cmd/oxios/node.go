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

	"github.com/oxios/oxios/internal/oxios"
)

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "The nodes of the cluster",
		Example: `  oxios node list
  oxios node list -o json`,
		Args: noArgs,
	}
	cmd.AddCommand(a.nodeListCmd())
	return cmd
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", name, nodeState(col, n.State), n.Address, n.Running, n.FreeSlots,
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
