package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Home is the oxios home directory ($OXIOS_HOME, default ~/.oxios) and the
// layout of the files in it.
type Home struct {
	Dir string
}

// DefaultHome resolves the home directory from $OXIOS_HOME or ~/.oxios.
// The result is absolute, so a daemon started from another working
// directory finds the same files.
func DefaultHome() (Home, error) {
	dir := os.Getenv("OXIOS_HOME")
	if dir == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return Home{}, fmt.Errorf("cannot find the home directory; set OXIOS_HOME: %w", err)
		}
		dir = filepath.Join(h, ".oxios")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("OXIOS_HOME %q: %w", dir, err)
	}
	return Home{Dir: abs}, nil
}

// ConfigPath is the default config file, home/config.toml.
func (h Home) ConfigPath() string { return filepath.Join(h.Dir, "config.toml") }

// PIDPath is the daemon's PID file, written and flock-held by the daemon.
func (h Home) PIDPath() string { return filepath.Join(h.Dir, "oxios.pid") }

// LogDir holds the daemon log and the agents' logs.
func (h Home) LogDir() string { return filepath.Join(h.Dir, "logs") }

// LogPath is the daemon log file.
func (h Home) LogPath() string { return filepath.Join(h.Dir, "logs", "oxios.log") }

// DataDir holds the backbone's storage.
func (h Home) DataDir() string { return filepath.Join(h.Dir, "data") }

// SecretsDir holds the admin token and keys; it is kept at mode 0700.
func (h Home) SecretsDir() string { return filepath.Join(h.Dir, "secrets") }

// AdminTokenPath is the admin API token the CLI uses by default.
func (h Home) AdminTokenPath() string { return filepath.Join(h.Dir, "secrets", "admin.token") }

// AuditKeyPath is the key of the audit trail's HMAC chain: the cluster
// key when this home has one (every node of a cluster signs one chain),
// else the home's own audit.key.
func (h Home) AuditKeyPath() string {
	if _, err := os.Stat(h.ClusterKeyPath()); err == nil {
		return h.ClusterKeyPath()
	}
	return h.OwnAuditKeyPath()
}

// OwnAuditKeyPath is the home's own audit key, used without a cluster key.
func (h Home) OwnAuditKeyPath() string { return filepath.Join(h.Dir, "secrets", "audit.key") }

// ClusterKeyPath is the cluster's shared secret, the same file on every
// node ('oxios cluster init').
func (h Home) ClusterKeyPath() string { return filepath.Join(h.Dir, "secrets", "cluster.key") }

// Instance is this home's id, made once: it tells this home's daemon
// apart from another that has its node name, so that a daemon that
// restarts after a crash takes its name back at once.
func (h Home) Instance() (string, error) {
	path := filepath.Join(h.Dir, "instance")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return id, nil
}

// WorkspacesDir holds each agent's default working directory.
func (h Home) WorkspacesDir() string { return filepath.Join(h.Dir, "workspaces") }

// Ensure creates the home directory and its subdirectories with private
// permissions, and writes config.toml with commented defaults when it does
// not exist. It reports whether it wrote the config file.
func (h Home) Ensure() (createdConfig bool, err error) {
	if err := h.EnsureDirs(); err != nil {
		return false, err
	}
	return WriteDefault(h.ConfigPath())
}

// EnsureDirs creates the home directory and its subdirectories with private
// permissions.
func (h Home) EnsureDirs() error {
	for _, d := range []string{h.Dir, h.LogDir(), h.DataDir(), h.SecretsDir(), h.WorkspacesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// MkdirAll leaves an existing directory's mode alone; secrets must be private.
	if err := os.Chmod(h.SecretsDir(), 0o700); err != nil {
		return fmt.Errorf("secure %s: %w", h.SecretsDir(), err)
	}
	return nil
}

// WriteDefault writes the commented default config to path unless a file is
// already there. It never overwrites, even when two processes race.
func WriteDefault(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.WriteString(Template); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
