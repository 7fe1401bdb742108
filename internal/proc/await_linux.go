package proc

import (
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit returns once process pid (a child not yet reaped) has exited,
// without holding an OS thread while it runs: it waits on a pidfd in the
// runtime's poller. A blocking wait per child would cost a thread each,
// which for a thousand agents is a thousand threads, their memory, and
// slower forks. If a pidfd cannot be used it returns at once, and the
// caller's blocking wait does the work.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		// A pidfd is readable once the process has exited.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil || n > 0
	})
}
