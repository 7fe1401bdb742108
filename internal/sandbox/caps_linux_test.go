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
		out, _ = run(t, policy(dir), "/bin/sh", "-c", "ulimit -u unlimited 2>&1 && echo RAISED; mount -t tmpfs x . 2>&1 || echo NOMOUNT")
		if !strings.Contains(out, "NOMOUNT") {
			t.Errorf("ESCAPE: %q", out)
		}
	}
}
