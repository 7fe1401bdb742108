package sandbox

import (
	"os/exec"
	"syscall"
	"testing"
)

// BenchmarkStart starts /bin/true without a sandbox, with Landlock and
// no limits, and with the whole default sandbox, to show what each part
// costs.
func BenchmarkStart(b *testing.B) {
	dir := b.TempDir()
	for _, c := range []struct {
		name string
		p    Policy
	}{
		{"off", Policy{Mode: Off}},
		{"landlock", Policy{Mode: Enforce, Dir: dir, Network: NetAny}},
		{"landlock+limits", Policy{Mode: Enforce, Dir: dir, Network: NetAny, Limits: Limits{MemoryMB: 4096, OpenFiles: 4096, Processes: 4096}}},
		{"landlock+limits+netns", Policy{Mode: Enforce, Dir: dir, Network: NetNone, Limits: Limits{MemoryMB: 4096, OpenFiles: 4096, Processes: 4096}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command("/bin/true")
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if _, err := Start(cmd, c.p); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cmd.Wait()
				b.StartTimer()
			}
		})
	}
}
