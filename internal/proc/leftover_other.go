//go:build !linux

package proc

import (
	"syscall"
	"time"
)

// Leftovers cannot identify processes on this system and finds none.
func Leftovers(pid int, startTime uint64) []int { return nil }

// Terminate cannot identify processes on this system and does nothing.
func Terminate(pid int, startTime uint64, sig syscall.Signal, grace time.Duration) int { return 0 }
