package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	ll "github.com/oxios/oxios/internal/sandbox/landlock"
)

var etcCache struct {
	mu    sync.Mutex // guards mtime and paths
	mtime [3]time.Time
	paths []string
	// rw guards rules: held for reading while a start adds them, so that
	// their descriptors are closed only when no start uses them.
	rw    sync.RWMutex
	rules []sysRule
	of    []string // the paths rules were made from
}

// sysRule is a system path, opened once (O_PATH), and the access it
// grants.
type sysRule struct {
	fd     int
	access uint64
}

// withSystemRules calls f with the rules every sandbox has — the system
// paths (read and execute), /proc and /sys (read), the devices — whose
// files are opened once and kept: opening some 150 paths at each start
// would cost more than the rest of the sandbox. They are made again when
// /etc changes, once no start is using the old ones.
func withSystemRules(f func([]sysRule) error) error {
	c := &etcCache
	for {
		paths := systemPaths()
		c.rw.RLock()
		if c.rules != nil && slices.Equal(paths, c.of) {
			defer c.rw.RUnlock()
			return f(c.rules)
		}
		c.rw.RUnlock()
		c.rw.Lock()
		if !(c.rules != nil && slices.Equal(paths, c.of)) {
			rules, err := openSystemRules(paths)
			if err != nil {
				c.rw.Unlock()
				return err
			}
			for _, r := range c.rules {
				unix.Close(r.fd)
			}
			c.rules, c.of = rules, paths
		}
		c.rw.Unlock()
	}
}

func openSystemRules(paths []string) ([]sysRule, error) {
	var rules []sysRule
	add := func(path string, access uint64) error {
		f, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil // a system directory this machine does not have
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(f, &st); err != nil {
			unix.Close(f)
			return fmt.Errorf("%s: %w", path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access &= fileRight
		}
		rules = append(rules, sysRule{fd: f, access: access})
		return nil
	}
	var err error
	for _, d := range paths {
		err = errors.Join(err, add(d, readExec))
	}
	for _, d := range []string{"/proc", "/sys"} {
		err = errors.Join(err, add(d, readOnly))
	}
	for _, d := range devRW {
		err = errors.Join(err, add(d, ll.AccessFSReadFile|ll.AccessFSWriteFile|ll.AccessFSTruncate|ll.AccessFSIoctlDev))
	}
	for _, d := range devRO {
		err = errors.Join(err, add(d, ll.AccessFSReadFile))
	}
	if err != nil {
		for _, r := range rules {
			unix.Close(r.fd)
		}
		return nil, err
	}
	return rules, nil
}

// systemPaths are the paths granted read and execute: SystemRead, with
// /etc, when the daemon is root, as its entries but the secret ones (a
// program running as uid 0 owns them; for any other user their modes
// keep them unreadable, and /etc is granted whole, one rule instead of
// some 150). They are listed again when /etc, /etc/ssh or /etc/ssl
// changes.
func systemPaths() []string {
	if os.Geteuid() != 0 {
		return SystemRead
	}
	dirs := [3]string{"/etc", "/etc/ssh", "/etc/ssl"}
	var mt [3]time.Time
	for i, d := range dirs {
		if fi, err := os.Stat(d); err == nil {
			mt[i] = fi.ModTime()
		}
	}
	c := &etcCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paths != nil && c.mtime == mt {
		return c.paths
	}
	defer func() { c.mtime = mt }()
	paths := slices.DeleteFunc(slices.Clone(SystemRead), func(p string) bool { return p == "/etc" })
	var list func(dir string)
	list = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			switch {
			case dir == "/etc" && (e.Name() == "ssh" || e.Name() == "ssl"):
				list(p)
			case !etcSecret(dir, e.Name()):
				paths = append(paths, p)
			}
		}
	}
	list("/etc")
	return paths
}
