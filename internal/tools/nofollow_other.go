//go:build !linux

package tools

import "os"

func openNoFollow(p string, flags int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(p, flags, perm)
}

func mkdirAllNoFollow(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
