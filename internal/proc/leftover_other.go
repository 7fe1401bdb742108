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

// Tagged is a process found by ByEnv.
type Tagged struct {
	PID   int
	Start uint64
}

// ByEnv cannot read other processes' environments here and finds none.
func ByEnv(key string) map[string][]Tagged { return nil }
