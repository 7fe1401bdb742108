//go:build linux

package tools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The file tools run in the daemon, not in the sandbox. Gate.Path hands
// them a path with every symlink resolved; they open it without following
// any, so a link that a program of the agent swapped in since the check
// (a rename race) is refused instead of followed out of the workspace.

// openNoFollow opens p, which must hold no symlink.
func openNoFollow(p string, flags int, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(perm), Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.6 (and so without Landlock): the last component
		// at least is not followed.
		fd, err = unix.Open(p, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(perm))
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, &os.PathError{Op: "open", Path: p, Err: errors.New("a symlink appeared in the path since it was checked")}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// mkdirAllNoFollow makes dir and its missing parents, each inside a parent
// opened without following symlinks.
func mkdirAllNoFollow(dir string, perm os.FileMode) error {
	f, err := openNoFollow(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		f.Close()
		return nil
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || !errors.Is(pe.Err, unix.ENOENT) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return err
	}
	if err := mkdirAllNoFollow(parent, perm); err != nil {
		return err
	}
	pf, err := openNoFollow(parent, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer pf.Close()
	if err := unix.Mkdirat(int(pf.Fd()), filepath.Base(dir), uint32(perm)); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	// It must be a directory now, not a link made in its place.
	f, err = openNoFollow(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return f.Close()
}
