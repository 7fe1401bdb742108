//go:build !linux

package proc

import (
	"syscall"
	"time"
)

// Tagged identifies one process: its PID and start time.
type Tagged struct {
	PID   int
	Start uint64
	Also  string
}

// Leftovers cannot identify processes on this system and finds none.
func Leftovers(pid int, startTime uint64, tag string) []Tagged { return nil }

// Terminate cannot verify processes on this system and does nothing.
func Terminate(procs []Tagged, sig syscall.Signal, grace time.Duration) int { return 0 }

// ByEnv cannot read other processes' environments here and finds none.
func ByEnv(key string) map[string][]Tagged { return nil }

// ByEnvWith needs /proc.
func ByEnvWith(key, also string) map[string][]Tagged { return nil }

// KillTagged cannot read other processes' environments here.
func KillTagged(tag string, pid0 int, since uint64) int { return 0 }
