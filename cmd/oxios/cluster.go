package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/cluster"
)

func (a *app) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cluster",
		Short:   "Make several daemons one oxios",
		Example: `  oxios cluster init     # on the first node: write secrets/cluster.key`,
		Args:    noArgs,
	}
	cmd.AddCommand(a.clusterInitCmd())
	return cmd
}

func (a *app) clusterInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Write this cluster's key, secrets/cluster.key, on the first node",
		Long: `Write secrets/cluster.key (mode 0600): the one secret of a cluster. Routes
between the nodes are authenticated with it, and every node signs the one
audit trail with it. Run it once, on the first node; copy the file to
secrets/cluster.key in the home of every other node before its first start.

A home that already has an audit key (a single node that becomes the first
node of a cluster) keeps it: that key becomes the cluster key, so the audit
trail written so far still verifies.`,
		Example: `  oxios cluster init
  scp ~/.oxios/secrets/cluster.key node2:.oxios/secrets/cluster.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.home()
			if err != nil {
				return err
			}
			if err := h.EnsureDirs(); err != nil {
				return failure(err)
			}
			path := h.ClusterKeyPath()
			adopted, err := cluster.Init(path, h.OwnAuditKeyPath())
			if err != nil {
				return failure(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, map[string]any{"path": path, "adopted_audit_key": adopted})
			}
			fmt.Fprintf(a.stdout, "wrote %s (0600)\n", path)
			if adopted {
				fmt.Fprintln(a.stdout, "  it is this home's audit key, so the audit trail so far still verifies")
			}
			fmt.Fprintf(a.stdout, `next:
  1. copy it to secrets/cluster.key (mode 0600) in the home of every other node,
     before that node's first start: scp %s OTHER:~/.oxios/secrets/
  2. in each node's config.toml: a distinct node name, and
       [cluster]
       listen = "THIS-NODE:7101"
       peers  = ["OTHER-NODE:7101", ...]
  3. start every node (oxios start); the cluster answers once most nodes are up
`, path)
			return nil
		},
	}
}
