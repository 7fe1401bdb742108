package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StartTime returns the start time of process pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat). With the PID it identifies one process
// for ever: a recycled PID has another start time.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name (field 2) may hold spaces and parentheses.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Same reports whether pid is still the process that had startTime.
func Same(pid int, startTime uint64) bool {
	st, err := StartTime(pid)
	return err == nil && st == startTime
}
