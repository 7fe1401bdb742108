//go:build !linux

package sandbox

import (
	"os/exec"
	"runtime"
)

// Kernel is what this kernel and this daemon can confine with.
type Kernel struct {
	Landlock    int    `json:"landlock_abi"`
	LandlockWhy string `json:"landlock_why,omitempty"`
	NetNS       bool   `json:"netns"`
	NetNSWhy    string `json:"netns_why,omitempty"`
	Limits      bool   `json:"limits"`
	LimitsWhy   string `json:"limits_why,omitempty"`
	Root        bool   `json:"root"`
	Cgroup      string `json:"cgroup"`
}

// ForceABIEnv is honoured on Linux only.
const ForceABIEnv = "OXIOS_TEST_LANDLOCK_ABI"

// Probe reports that nothing can be confined on this system.
func Probe() Kernel {
	why := "the sandbox needs Linux (this is " + runtime.GOOS + ")"
	return Kernel{LandlockWhy: why, NetNSWhy: why, LimitsWhy: why, Cgroup: why}
}

// Prepare reports the sandbox p would get: none, which enforce refuses.
func Prepare(p Policy) (Effective, error) {
	eff := Effective{Mode: p.Mode, Network: NetAny}
	if p.Mode == Off {
		return eff, nil
	}
	if p.Mode == Enforce {
		return eff, &UnavailableError{Why: Probe().LandlockWhy}
	}
	eff.Unenforced = []string{Probe().LandlockWhy}
	return eff, nil
}

// Start starts cmd unconfined unless p enforces a sandbox.
func Start(cmd *exec.Cmd, p Policy) (Effective, error) {
	eff, err := Prepare(p)
	if err != nil {
		return eff, err
	}
	return eff, cmd.Start()
}
