package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/kernel"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and check the configuration",
		Example: `  oxios config path
  oxios config show
  oxios config validate --config ./config.toml`,
		Args: noArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "path",
		Short:   "Print the path of the config file in use",
		Example: "  oxios config path",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := a.configFile()
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, path)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "show",
		Short:   "Print the effective configuration (the file over the defaults)",
		Example: "  oxios config show\n  oxios config show -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.home()
			if err != nil {
				return err
			}
			cfg, path, err := a.settings(h)
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(a.stderr, "# %s does not exist yet; these are the defaults\n", path)
			}
			cfg = cfg.Redacted()
			if a.output == "json" {
				return printJSON(a.stdout, cfg)
			}
			b, err := cfg.Marshal()
			if err != nil {
				return failure(err)
			}
			_, err = a.stdout.Write(b)
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "validate",
		Short: "Check the config file; exit 2 naming the first problem",
		Long: `Check the config file: TOML syntax, unknown keys, value types and allowed
values. Prints one line naming the file, line and key of the first problem
and exits 2, or says the file is valid and exits 0.`,
		Example: "  oxios config validate\n  oxios config validate --config /etc/oxios/config.toml",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := a.configFile()
			if err != nil {
				return err
			}
			if _, err := config.Load(path, kernel.CheckConfig); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return usageError("%s does not exist (it is created by the first 'oxios start')", path)
				}
				return usageError("%v", err)
			}
			fmt.Fprintf(a.stdout, "%s is valid\n", path)
			return nil
		},
	})
	return cmd
}

func (a *app) configFile() (string, error) {
	if a.configPath != "" {
		return a.configPath, nil
	}
	h, err := a.home()
	if err != nil {
		return "", err
	}
	return h.ConfigPath(), nil
}
