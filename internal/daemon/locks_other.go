//go:build !linux

package daemon

// lockHolder is unknown where the system does not list locks.
func lockHolder(dev, ino uint64) (pid int, known bool) { return 0, false }
