package service

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// Target is where a service file goes, what it holds and how it is
// managed.
type Target struct {
	Path    string
	Content string
	// Launchd is set on macOS; otherwise the manager is systemd.
	Launchd bool
	System  bool
}

// ErrUnsupported is a system with neither systemd nor launchd.
var ErrUnsupported = errors.New("oxios service supports systemd (Linux) and launchd (macOS), not " + runtime.GOOS)

// NewTarget renders the service o describes for this machine's service
// manager: a launchd property list on macOS, a systemd unit (using what
// the installed systemd supports) on Linux, at the path the manager reads
// for a system-wide service or for the user's own.
func NewTarget(o Options) (Target, error) {
	t := Target{System: o.System}
	var err error
	switch runtime.GOOS {
	case "darwin":
		t.Launchd = true
		t.Path = filepath.Join("/Library/LaunchDaemons", Label+".plist")
		if !o.System {
			home, _ := os.UserHomeDir()
			t.Path = filepath.Join(home, "Library", "LaunchAgents", Label+".plist")
		}
		t.Content, err = Plist(o)
	case "linux":
		if o.SystemdVersion == 0 {
			o.SystemdVersion = SystemdVersion()
		}
		t.Path = filepath.Join("/etc/systemd/system", UnitName)
		if !o.System {
			dir := os.Getenv("XDG_CONFIG_HOME")
			if dir == "" {
				home, _ := os.UserHomeDir()
				dir = filepath.Join(home, ".config")
			}
			t.Path = filepath.Join(dir, "systemd", "user", UnitName)
		}
		t.Content, err = Unit(o)
	default:
		return Target{}, ErrUnsupported
	}
	return t, err
}

// Manage is the command line that runs args with t's service manager:
// launchctl, systemctl, or systemctl --user.
func (t Target) Manage(args ...string) []string {
	if t.Launchd {
		return append([]string{"launchctl"}, args...)
	}
	cmd := []string{"systemctl"}
	if !t.System {
		cmd = append(cmd, "--user")
	}
	return append(cmd, args...)
}

var systemdVersionRe = regexp.MustCompile(`^systemd (\d+)`)

// SystemdVersion is the installed systemd's version (0 if unknown).
func SystemdVersion() int {
	out, err := exec.Command("systemctl", "--version").Output()
	if err != nil {
		return 0
	}
	m := systemdVersionRe.FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// ErrTemporaryBinary is an oxios run by go run, from a build directory
// that is gone once it exits.
var ErrTemporaryBinary = errors.New("this oxios runs from a temporary build directory (go run); build it (go build -o bin/oxios ./cmd/oxios) and install from that binary")

// Binary is the resolved path of this program, which the service runs.
func Binary() (string, error) {
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return "", fmt.Errorf("cannot find this program's path: %w", err)
	}
	if strings.Contains(bin, "go-build") {
		return "", ErrTemporaryBinary
	}
	return bin, nil
}

// RunAs is the user a system-wide service runs as: runAs when given, else
// the user behind sudo, else the current user.
func RunAs(runAs string) string {
	if runAs != "" {
		return runAs
	}
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if me, err := user.Current(); err == nil {
		return me.Username
	}
	return ""
}
