package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// etcSecret are what of /etc a program never reads, even as uid 0 (whose
// files these are): password hashes, sudo rules, SSH host keys and TLS
// private keys. /etc is granted entry by entry without them.
func etcSecret(dir, name string) bool {
	switch dir {
	case "/etc":
		switch name {
		case "shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "security", "ssh", "ssl":
			return true
		}
	case "/etc/ssh":
		return strings.HasPrefix(name, "ssh_host_") && strings.HasSuffix(name, "_key")
	case "/etc/ssl":
		return name == "private"
	}
	return false
}

var etcCache struct {
	mu    sync.Mutex
	mtime [3]time.Time
	paths []string
}

// systemPaths are the paths granted read and execute: SystemRead, with
// /etc as its entries but the secret ones. They are listed again when
// /etc, /etc/ssh or /etc/ssl changes.
func systemPaths() []string {
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
	c.paths, c.mtime = paths, mt
	return paths
}
