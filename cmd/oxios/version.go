package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/version"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of this oxios binary",
		Example: "  oxios version\n  oxios version -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version.Get()
			if a.output == "json" {
				return printJSON(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "oxios %s (commit %s, %s, %s)\n", v.Version, v.Commit, v.GoVersion, v.Platform)
			if v.Commit == "unknown" {
				fmt.Fprintln(a.stderr, "the commit is unknown: this binary was built outside a git checkout, or with -buildvcs=false (see: go env GOFLAGS)")
			}
			return nil
		},
	}
}
