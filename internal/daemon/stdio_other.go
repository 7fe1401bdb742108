//go:build unix && !linux

package daemon

import (
	"os"

	"golang.org/x/sys/unix"
)

// RedirectStdio points the process's stdout and stderr at f. A detached
// daemon calls it after its log rotates, so that a panic trace or anything
// else written to the standard streams lands in the current log file.
func RedirectStdio(f *os.File) error {
	if err := unix.Dup2(int(f.Fd()), 1); err != nil {
		return err
	}
	return unix.Dup2(int(f.Fd()), 2)
}
