// Package sandbox confines the programs oxios starts for agents — process
// agents and the exec tool's programs — with the kernel: Landlock for the
// filesystem, TCP and signals, a network namespace where the daemon may make
// one, resource limits, no capabilities and no_new_privs. It is applied in
// the child before exec, from a thread of the daemon that is confined alone
// and then dies, so the daemon itself is never confined.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/oxios/oxios/internal/oxios"
)

// Modes of a sandbox.
const (
	Enforce    = oxios.Enforce
	BestEffort = oxios.BestEffort
	Off        = oxios.Off
)

// Networks a sandbox may give.
const (
	NetNone     = oxios.NetNone
	NetLoopback = oxios.NetLoopback
	NetAny      = oxios.NetAny
)

// The sandbox vocabulary, defined in package oxios.
type (
	// Spec is the sandbox a spawn spec asks for.
	Spec = oxios.SandboxSpec
	// Limits are resource limits.
	Limits = oxios.SandboxLimits
	// Effective is what a program got.
	Effective = oxios.SandboxEffective
)

// InvalidError is a sandbox spec that cannot be used; Field names what.
type InvalidError = oxios.InvalidError

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks s; errors name the field under prefix ("sandbox.").
// Paths must be absolute and exist; they are resolved in place.
func Validate(s *Spec, prefix string) error {
	switch s.Mode {
	case "", Enforce, BestEffort, Off:
	default:
		return invalid(prefix+"mode", "must be enforce, best_effort or off (got %q)", s.Mode)
	}
	switch s.Network {
	case "", NetNone, NetLoopback, NetAny:
	default:
		return invalid(prefix+"network", "must be none, loopback or any (got %q)", s.Network)
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"read", s.Read}, {"write", s.Write}} {
		if len(l.list) > 64 {
			return invalid(prefix+l.name, "at most 64 paths (got %d)", len(l.list))
		}
		for i, p := range l.list {
			field := fmt.Sprintf("%s%s[%d]", prefix, l.name, i)
			if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
				return invalid(field, "must be an absolute path (got %q)", p)
			}
			if _, err := os.Stat(p); err != nil {
				return invalid(field, "%s does not exist", p)
			}
			l.list[i] = Resolve(p)
		}
	}
	return validateLimits(s.Limits, prefix+"limits.")
}

func validateLimits(l Limits, prefix string) error {
	for _, f := range limitFields(l) {
		if f.v < 0 {
			return invalid(prefix+f.name, "must be 0 (the default) or more (got %d)", f.v)
		}
		if f.v > 1<<40 {
			return invalid(prefix+f.name, "must be at most %d (got %d)", int64(1)<<40, f.v)
		}
	}
	return nil
}

type limitField struct {
	name string
	v    int64
}

func limitFields(l Limits) []limitField {
	return []limitField{{"memory_mb", l.MemoryMB}, {"cpu_seconds", l.CPUSeconds}, {"open_files", l.OpenFiles}, {"processes", l.Processes}, {"file_size_mb", l.FileSizeMB}}
}

// Widening lists the fields of s (as given, paths resolved) that widen
// the sandbox beyond the defaults d: a weaker mode, a wider network, a
// higher limit, a read path not already readable by default, a write path
// not already writable by default. Giving any of them is an admin's
// decision.
func Widening(d, s Spec) []string {
	var w []string
	rank := map[string]int{Off: 0, BestEffort: 1, Enforce: 2}
	if s.Mode != "" && rank[s.Mode] < rank[d.Mode] {
		w = append(w, "mode")
	}
	netRank := map[string]int{NetNone: 0, NetLoopback: 1, NetAny: 2}
	if s.Network != "" && netRank[s.Network] > netRank[d.Network] {
		w = append(w, "network")
	}
	covered := func(p string, dirs []string) bool {
		for _, dir := range dirs {
			if within(p, Resolve(dir)) {
				return true
			}
		}
		return false
	}
	for i, p := range s.Read {
		if !SystemGrants(p) && !covered(p, slices.Concat(d.Read, d.Write)) {
			w = append(w, fmt.Sprintf("read[%d]", i))
		}
	}
	for i, p := range s.Write {
		if !covered(p, d.Write) {
			w = append(w, fmt.Sprintf("write[%d]", i))
		}
	}
	df := limitFields(d.Limits)
	for i, f := range limitFields(s.Limits) {
		if df[i].v != 0 && f.v > df[i].v { // 0 in the defaults is none: any value narrows it
			w = append(w, "limits."+f.name)
		}
	}
	return w
}

// Within reports whether p is dir or beneath it, by their names.
func Within(p, dir string) bool { return within(p, dir) }

// Resolve returns p with its symlinks resolved, or p cleaned when it
// cannot be: a rule is applied to what a path names, not to its spelling.
func Resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// within reports whether p is dir or beneath it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Policy is the sandbox to apply to one program.
type Policy struct {
	Mode string
	// Dir is the program's working directory, read-write.
	Dir string
	// Tmp is its private temporary directory, read-write (created).
	Tmp     string
	Read    []string
	Write   []string
	Network string
	Limits  Limits
}

// UnavailableError is a sandbox enforce mode could not apply.
type UnavailableError struct{ Why string }

func (e *UnavailableError) Error() string { return "sandbox unavailable: " + e.Why }

// ErrUnavailable matches every UnavailableError.
var ErrUnavailable = errors.New("sandbox unavailable")

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// SystemRead are the directories every sandboxed program may read and
// execute: the system's programs, libraries and configuration.
var SystemRead = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}

// Path is path (a PATH value) without the directories a program under p
// cannot read; the system's directories when none is left.
func (p Policy) Path(path string) string {
	var keep []string
	for _, d := range filepath.SplitList(path) {
		if d != "" && p.Readable(d) {
			keep = append(keep, d)
		}
	}
	if len(keep) == 0 {
		return "/usr/local/bin:/usr/bin:/bin"
	}
	return strings.Join(keep, ":")
}

// Readable reports whether dir is one a program under p may read: for
// keeping only such entries of PATH.
func (p Policy) Readable(dir string) bool {
	if p.Mode == Off {
		return true
	}
	for _, r := range slices.Concat(SystemRead, p.Read, p.Write, []string{p.Dir}) {
		if r != "" && within(dir, r) {
			return true
		}
	}
	return false
}

// SystemGrants reports whether every sandbox already grants reading p:
// it lies in a system directory, and, under /etc, not in one of the
// secrets a root daemon withholds (shadow, sudoers, SSH host keys, ...).
// /etc itself is not granted whole.
func SystemGrants(p string) bool {
	rel, err := filepath.Rel("/etc", p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return SystemReadable(p)
	}
	parts := strings.Split(rel, "/")
	if rel == "." || etcSecret("/etc", parts[0]) && !(parts[0] == "ssh" || parts[0] == "ssl") {
		return false
	}
	if parts[0] == "ssh" || parts[0] == "ssl" {
		return len(parts) > 1 && !etcSecret("/etc/"+parts[0], parts[1])
	}
	return true
}

// SystemReadable reports whether path is in the system directories every
// sandboxed program may read.
func SystemReadable(path string) bool {
	for _, d := range SystemRead {
		if within(path, d) {
			return true
		}
	}
	return false
}

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
