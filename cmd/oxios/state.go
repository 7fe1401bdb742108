package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/client"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/store"
)

// apiError turns an API error into the right exit: bad input is exit 2,
// anything else exit 1.
func apiError(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && (ce.Status == 400 || ce.Status == 413) {
		return usageError("%v", ce)
	}
	return failure(err)
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s needs %s (got %d arguments)", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

func (a *app) stateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read and write versioned JSON documents in namespaces",
		Long: `State is a set of namespaces holding JSON documents by key. Every write
returns a revision; --if-rev makes a write or delete happen only if the
document is still at that revision (compare-and-set).`,
		Example: `  oxios state put app config '{"mode": "fast"}'
  oxios state get app config
  echo '{"mode": "slow"}' | oxios state put app config --if-rev 1
  oxios state list app --prefix conf
  oxios state delete app config`,
		Args: noArgs,
	}
	cmd.AddCommand(a.stateGetCmd(), a.statePutCmd(), a.stateListCmd(), a.stateDeleteCmd())
	return cmd
}

func (a *app) stateGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get NAMESPACE KEY",
		Short:   "Print a document (with -o json: with its revision)",
		Example: "  oxios state get app config\n  oxios state get app config -o json",
		Args:    exactArgs(2, "NAMESPACE KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			e, err := c.StateGet(context.Background(), args[0], args[1])
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, e)
			}
			var pretty bytes.Buffer
			if json.Indent(&pretty, e.Value, "", "  ") != nil {
				pretty.Reset()
				pretty.Write(e.Value)
			}
			pretty.WriteByte('\n')
			_, err = a.stdout.Write(pretty.Bytes())
			return err
		},
	}
}

func (a *app) statePutCmd() *cobra.Command {
	var ifRev uint64
	var create bool
	cmd := &cobra.Command{
		Use:   "put NAMESPACE KEY [JSON]",
		Short: "Write a document (JSON as an argument, or on stdin)",
		Example: `  oxios state put app config '{"mode": "fast"}'
  oxios state put app config --if-rev 3 < config.json
  oxios state put app lock '"me"' --create`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return usageError("%s needs NAMESPACE KEY [JSON] (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			if len(args) == 3 && args[2] != "-" {
				value = []byte(args[2])
			} else {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, store.MaxValueSize+1))
				if err != nil {
					return failure(err)
				}
				value = bytes.TrimSpace(b)
			}
			if len(value) > store.MaxValueSize {
				return usageError("value: over the 1 MiB limit")
			}
			if !json.Valid(value) {
				return usageError("value: not valid JSON (a string needs quotes: '\"text\"')")
			}
			if create && ifRev > 0 {
				return usageError("--create and --if-rev cannot be used together")
			}
			if cmd.Flags().Changed("if-rev") && ifRev == 0 {
				return usageError("--if-rev: revisions start at 1 (use --create to write only if absent)")
			}
			put := a.statePutF
			if put == nil {
				c, err := a.client()
				if err != nil {
					return err
				}
				put = func(ns, key string, value []byte, o client.PutOptions) (uint64, error) {
					return c.StatePut(context.Background(), ns, key, value, o)
				}
			}
			rev, err := put(args[0], args[1], value, client.PutOptions{IfRevision: ifRev, Create: create})
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, map[string]any{"namespace": args[0], "key": args[1], "revision": rev})
			}
			fmt.Fprintf(a.stdout, "%s/%s: revision %d\n", args[0], args[1], rev)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&ifRev, "if-rev", 0, "write only if the document is at this revision")
	cmd.Flags().BoolVar(&create, "create", false, "write only if the document does not exist")
	return cmd
}

func (a *app) stateListCmd() *cobra.Command {
	var prefix string
	var limit int
	cmd := &cobra.Command{
		Use:     "list NAMESPACE",
		Short:   "List the documents of a namespace",
		Example: "  oxios state list app\n  oxios state list app --prefix users/ -o json",
		Args:    exactArgs(1, "NAMESPACE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usageError("--limit: must be 1 or more (got %d)", limit)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var all []oxios.Entry
			cursor := ""
			for {
				page := 1000
				if limit > 0 {
					page = min(1000, limit-len(all))
				}
				items, next, err := c.StateList(context.Background(), args[0], prefix, page, cursor)
				if err != nil {
					return apiError(err)
				}
				all = append(all, items...)
				if next == "" || (limit > 0 && len(all) >= limit) {
					break
				}
				cursor = next
			}
			if a.output == "json" {
				if all == nil {
					all = []oxios.Entry{}
				}
				return printJSON(a.stdout, all)
			}
			if len(all) == 0 {
				fmt.Fprintf(a.stderr, "no documents in %s\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tREVISION\tUPDATED\tSIZE")
			for _, e := range all {
				var compact bytes.Buffer
				if json.Compact(&compact, e.Value) != nil {
					compact.Write(e.Value)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", e.Key, e.Revision, e.Updated.Local().Format(time.DateTime), compact.Len())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that start with this")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many documents (default: all)")
	return cmd
}

func (a *app) stateDeleteCmd() *cobra.Command {
	var ifRev uint64
	cmd := &cobra.Command{
		Use:     "delete NAMESPACE KEY",
		Short:   "Delete a document",
		Example: "  oxios state delete app config\n  oxios state delete app config --if-rev 4",
		Args:    exactArgs(2, "NAMESPACE KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.StateDelete(context.Background(), args[0], args[1], ifRev); err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, map[string]any{"namespace": args[0], "key": args[1], "deleted": true})
			}
			fmt.Fprintf(a.stdout, "deleted %s/%s\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().Uint64Var(&ifRev, "if-rev", 0, "delete only if the document is at this revision")
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if cmd.Flags().Changed("if-rev") && ifRev == 0 {
			return usageError("--if-rev: revisions start at 1")
		}
		return nil
	}
	return cmd
}
