package proc

import "fmt"

// StartTime returns the start time of process pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat). With the PID it identifies one process
// for ever: a recycled PID has another start time.
func StartTime(pid int) (uint64, error) {
	st, ok := readStat(pid)
	if !ok {
		return 0, fmt.Errorf("no readable /proc/%d/stat", pid)
	}
	return st.start, nil
}

// Same reports whether pid is still the process that had startTime.
func Same(pid int, startTime uint64) bool {
	st, err := StartTime(pid)
	return err == nil && st == startTime
}
