package sandbox

import (
	"fmt"
	"os"
	"syscall"
)

// LimitReason says which of the limits l a program that ended as ps ran
// into ("" for none it can tell): CPU time and file size by the signal the
// kernel sends, memory by a peak resident size near the limit in a program
// that failed.
func LimitReason(ps *os.ProcessState, l Limits) string {
	if ps == nil {
		return ""
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		switch ws.Signal() {
		case syscall.SIGXCPU:
			return fmt.Sprintf("CPU time limit reached (%d s)", l.CPUSeconds)
		case syscall.SIGXFSZ:
			return fmt.Sprintf("file size limit %d MiB reached", l.FileSizeMB)
		}
	}
	if ps.Success() {
		return ""
	}
	ru, _ := ps.SysUsage().(*syscall.Rusage)
	if ru == nil {
		return ""
	}
	if l.CPUSeconds > 0 && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		used := ru.Utime.Sec + ru.Stime.Sec
		if used >= l.CPUSeconds {
			return fmt.Sprintf("CPU time limit reached (%d s)", l.CPUSeconds)
		}
	}
	// The kernel reports no allocation failure; a failed program whose
	// peak resident memory came within a quarter of the limit ran into it.
	// A child forked by vfork (as Go does) is reported with the peak of
	// the parent it shared memory with until its exec, so only a peak
	// above the daemon's own is the program's.
	var self syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	if l.MemoryMB > 0 && ru.Maxrss*1024 >= l.MemoryMB<<20*3/4 && ru.Maxrss > self.Maxrss {
		return fmt.Sprintf("memory limit %d MiB reached", l.MemoryMB)
	}
	return ""
}

// ProcessLimitReason is why an agent whose processes reached limit was
// stopped.
func ProcessLimitReason(limit int64) string {
	return fmt.Sprintf("process limit %d reached", limit)
}
