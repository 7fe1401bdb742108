//go:build unix && !linux

package daemon

import "golang.org/x/sys/unix"

// closeInheritedOnExec marks every descriptor above stderr close-on-exec, so
// a daemon started from this process does not keep inherited files open.
func closeInheritedOnExec() {
	var lim unix.Rlimit
	max := 1024
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 65536 {
		max = int(lim.Cur)
	}
	for fd := 3; fd < max; fd++ {
		unix.CloseOnExec(fd)
	}
}
