package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens",
		Long: `API tokens carry a role: viewer (read only), operator (agents, state,
events) or admin (everything, tokens and the audit trail included). They
are stored as SHA-256 hashes; a token's secret is shown once, when it is
created. A revoked or expired token stops working at once.`,
		Example: `  oxios token create ci --role operator --expires 720h
  oxios token list
  oxios token revoke ci`,
		Args: noArgs,
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var role, expires string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a token and print its secret (shown only this once)",
		Example: `  oxios token create dashboard --role viewer
  OXIOS_TOKEN=$(oxios token create ci --role operator --expires 24h -o json | jq -r .secret)`,
		Args: exactArgs(1, "a token name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			tc, err := c.CreateToken(context.Background(), args[0], role, expires)
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, tc)
			}
			fmt.Fprintln(a.stdout, tc.Secret)
			exp := "never expires"
			if tc.Token.ExpiresAt != nil {
				exp = "expires " + tc.Token.ExpiresAt.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(a.stderr, "token %q (%s, %s); the secret above is not shown again\n", tc.Token.Name, tc.Token.Role, exp)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "viewer", "admin, operator or viewer")
	cmd.Flags().StringVar(&expires, "expires", "", "lifetime such as 720h (default: no expiry)")
	return cmd
}

func (a *app) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never their secrets)",
		Example: "  oxios token list\n  oxios token list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			toks, err := c.Tokens(context.Background())
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, toks)
			}
			if len(toks) == 0 {
				fmt.Fprintln(a.stderr, "no tokens besides the admin token")
				return nil
			}
			ts := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.Local().Format(time.DateTime)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tEXPIRES\tLAST USED\tID")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, ts(&t.CreatedAt), ts(t.ExpiresAt), ts(t.LastUsedAt), t.ID)
			}
			return tw.Flush()
		},
	}
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke NAME|ID",
		Short:   "Revoke a token; it stops working at once",
		Example: "  oxios token revoke ci",
		Args:    exactArgs(1, "a token name or id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(context.Background(), args[0]); err != nil {
				return apiError(err)
			}
			if a.output != "json" {
				fmt.Fprintf(a.stdout, "token %s revoked\n", args[0])
			}
			return nil
		},
	}
}
