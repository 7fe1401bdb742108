// Command oxios is the agent operating system: run without arguments it
// starts the daemon; its subcommands control and inspect a running daemon.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Exit codes. They mean the same for every command.
const (
	exitOK          = 0
	exitFailure     = 1   // the command was valid but did not succeed
	exitUsage       = 2   // bad flag, argument or configuration
	exitStopped     = 3   // status: the daemon is not running
	exitKilled      = 3   // agent wait: the agent was killed
	exitTimeout     = 124 // agent wait: the timeout passed first (as timeout(1))
	exitInterrupted = 130 // interrupted by Ctrl-C (128 + SIGINT, as shells report it)
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return (&app{stdout: stdout, stderr: stderr}).execute(args)
}

// execute runs the command args name and returns its exit code, having
// printed its error in one line.
func (a *app) execute(args []string) int {
	stderr := a.stderr
	root := a.root()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Errors cobra raises itself: unknown command, bad arguments.
		ee = &exitError{code: exitUsage, err: fmt.Errorf("%w (see 'oxios --help')", err)}
	}
	if ee.err != nil {
		fmt.Fprintf(stderr, "oxios: %s\n", ee.err.Error())
	}
	return ee.code
}

// exitError carries the exit code a command ends with. A nil err prints
// nothing (the command has already said what it had to).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is bad input from the user: exit code 2.
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// failure is a valid command that did not succeed: exit code 1.
func failure(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitFailure, err: err}
}
