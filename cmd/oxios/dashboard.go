package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) dashboardCmd() *cobra.Command {
	var printOnly bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Open the web dashboard, logged in",
		Long: `Dashboard opens the daemon's web dashboard in a browser at a one-time login
URL: it works once, within two minutes, and logs the browser in with the
CLI's token (a session cookie). When no browser can be opened (no display,
over SSH) it prints the URL instead; --print only prints it.`,
		Example: "  oxios dashboard\n  oxios dashboard --print",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			link, err := c.CreateLoginLink(ctx)
			if err != nil {
				return apiError(err)
			}
			if a.output == "json" {
				return printJSON(a.stdout, link)
			}
			if !printOnly {
				if err := openBrowser(link.URL); err == nil {
					fmt.Fprintln(a.stderr, "opened the dashboard in your browser (the link works once, for 2 minutes)")
					return nil
				}
			}
			fmt.Fprintln(a.stdout, link.URL)
			if !printOnly {
				fmt.Fprintln(a.stderr, "no browser could be opened; open the URL above (it works once, for 2 minutes)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the login URL instead of opening a browser")
	return cmd
}

// openBrowser starts the user's browser at url: $BROWSER, else the
// desktop's opener. It fails where no desktop is there to show it.
func openBrowser(url string) error {
	var c *exec.Cmd
	switch {
	case os.Getenv("BROWSER") != "":
		c = exec.Command(os.Getenv("BROWSER"), url)
	case runtime.GOOS == "darwin":
		c = exec.Command("open", url)
	case runtime.GOOS == "windows":
		c = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return fmt.Errorf("no display")
		}
		c = exec.Command("xdg-open", url)
	}
	c.Stdout, c.Stderr = nil, nil
	if os.Getenv("BROWSER") != "" {
		// A browser started directly runs until it is closed: do not wait.
		if err := c.Start(); err != nil {
			return err
		}
		go c.Wait()
		return nil
	}
	return c.Run() // the desktop's opener hands the URL over and exits
}
