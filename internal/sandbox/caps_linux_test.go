package sandbox

import (
	"os"
	"strings"
	"testing"
)

// Even when the daemon is root, a sandboxed program has no capabilities,
// and cannot gain any by exec (no_new_privs).
func TestNoCapabilities(t *testing.T) {
	needLandlock(t)
	dir, _ := box(t)
	out, err := run(t, policy(dir), "/bin/sh", "-c", "grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs)' /proc/self/status")
	if err != nil {
		t.Fatal(err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		if k == "NoNewPrivs" && v != "1" || k != "NoNewPrivs" && strings.Trim(v, "0") != "" {
			t.Errorf("ESCAPE: %s", line)
		}
	}
	if os.Geteuid() == 0 {
		// A root shell's own attempt to change what the kernel allows.
		out, _ = run(t, policy(dir), "/bin/sh", "-c", "ulimit -n 999999 2>&1 && echo RAISED")
		if strings.Contains(out, "RAISED") {
			t.Errorf("ESCAPE: raised a hard limit: %q", out)
		}
		if _, err := os.Stat("/bin/mount"); err == nil {
			out, _ = run(t, policy(dir), "/bin/mount", "-t", "tmpfs", "x", dir)
			if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), dir) {
				t.Errorf("ESCAPE: mounted over its directory: %q", out)
			}
		}
	}
}
