package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

// outOfMemory are what programs print when an allocation fails: Python,
// C and C++, Node.js, Go, Java, Rust.
var outOfMemory = [][]byte{[]byte("MemoryError"), []byte("Cannot allocate memory"), []byte("out of memory"),
	[]byte("std::bad_alloc"), []byte("OutOfMemoryError"), []byte("memory allocation of")}

// LimitReason says which of the limits l a program that ended as ps ran
// into ("" for none it can tell): CPU time and file size by the signal the
// kernel sends; memory, of which the kernel reports nothing, by a failed
// program that said it ran out (tail is the end of its output) or whose
// peak resident size came within a quarter of the limit.
func LimitReason(ps *os.ProcessState, l Limits, tail []byte) string {
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
	if l.MemoryMB == 0 {
		return ""
	}
	var self syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	said := false
	for _, m := range outOfMemory {
		said = said || bytes.Contains(tail, m)
	}
	if said || ru.Maxrss*1024 >= l.MemoryMB<<20*3/4 && ru.Maxrss > self.Maxrss {
		return fmt.Sprintf("memory limit %d MiB reached", l.MemoryMB)
	}
	return ""
}

// ProcessLimitReason is why an agent whose processes reached limit was
// stopped.
func ProcessLimitReason(limit int64) string {
	return fmt.Sprintf("process limit %d reached", limit)
}
