package doctor

import (
	"fmt"

	"github.com/oxios/oxios/internal/sandbox"
)

// sandbox reports what the kernel offers the sandbox, and the sandbox
// agents get by default.
func (c *checkup) sandbox() {
	k := sandbox.Probe()
	sb := c.Config.Sandbox
	switch {
	case k.Landlock > 0:
		c.add("sandbox", "ok", fmt.Sprintf("Landlock ABI %d: files, TCP (ABI 4+) and signals (ABI 6+) are confined", k.Landlock), "")
	case sb.Mode == sandbox.Enforce:
		c.add("sandbox", "fail", k.LandlockWhy+`: with sandbox.mode = "enforce" no agent will start`,
			`use a kernel with Landlock (5.13+, "landlock" in the lsm= boot parameter), or set sandbox.mode = "best_effort" in the config (agents then run unconfined)`)
	default:
		c.add("sandbox", "warn", k.LandlockWhy+": agents run without filesystem confinement (sandbox.mode = \""+sb.Mode+"\")", "use a kernel with Landlock (5.13+)")
	}
	if k.NetNS {
		c.add("sandbox", "ok", `network namespaces: network "none" and "loopback" are enforced by a namespace`, "")
	} else {
		c.add("sandbox", "warn", k.NetNSWhy+`: network "none" confines TCP only (Landlock), "loopback" cannot be enforced`, "run the daemon with CAP_SYS_ADMIN (e.g. as root) for network namespaces")
	}
	if k.Limits {
		c.add("sandbox", "ok", "resource limits are set before an agent's first instruction", "")
	} else {
		c.add("sandbox", "fail", k.LimitsWhy, "allow ptrace of the daemon's own children (seccomp, Yama ptrace_scope < 3)")
	}
	c.add("sandbox", "warn", k.Cgroup+": memory and CPU are limited per process (RLIMIT_DATA, RLIMIT_CPU), not per agent", "no fix yet: oxios does not manage delegated cgroups")
	if k.Root {
		c.add("sandbox", "warn", "the daemon runs as root: agents run as uid 0 (with no capabilities), so a unix socket such as /run/docker.sock is theirs to connect to (Landlock does not confine that before ABI 9), and the kernel exempts uid 0 from RLIMIT_NPROC, so only oxios's own count (every 250 ms) stops a fork bomb",
			"run the daemon as a user (oxios service install --system --run-as USER)")
	}
	l := sb.Limits
	c.add("sandbox", "ok", fmt.Sprintf("default: mode %s; network %s for process agents, %s for exec; limits memory %s, CPU %s, open files %s, processes %s, file size %s",
		sb.Mode, sb.Network, sb.ExecNetwork, limit(l.MemoryMB, " MiB"), limit(l.CPUSeconds, " s"), limit(l.OpenFiles, ""), limit(l.Processes, ""), limit(l.FileSizeMB, " MiB")), "")
}

func limit(v int64, unit string) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprint(v) + unit
}
