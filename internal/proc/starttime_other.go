//go:build !linux

package proc

import "errors"

// StartTime is not known on this system.
func StartTime(pid int) (uint64, error) { return 0, errors.New("process start time is not available") }

// Same cannot tell processes apart here, so it never claims they are the same.
func Same(pid int, startTime uint64) bool { return false }
