//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	ll "github.com/oxios/oxios/internal/sandbox/landlock"
)

// Kernel is what this kernel and this daemon can confine with.
type Kernel struct {
	// Landlock is the Landlock ABI (0: none); LandlockWhy says why none.
	Landlock    int    `json:"landlock_abi"`
	LandlockWhy string `json:"landlock_why,omitempty"`
	// NetNS reports that the daemon may create network namespaces.
	NetNS    bool   `json:"netns"`
	NetNSWhy string `json:"netns_why,omitempty"`
	// Limits reports that resource limits can be set before a program
	// runs its first instruction (through a ptrace stop at exec).
	Limits    bool   `json:"limits"`
	LimitsWhy string `json:"limits_why,omitempty"`
	// Root is a daemon running as uid 0, which the kernel exempts from
	// RLIMIT_NPROC.
	Root bool `json:"root"`
	// Cgroup says why cgroup v2 limits are not used ("" never: oxios
	// does not manage cgroups yet).
	Cgroup string `json:"cgroup"`
}

var (
	probeOnce sync.Once
	probed    Kernel
)

// ForceABIEnv, when set to a number, makes the probe report that Landlock
// ABI: tests use it to simulate a kernel without Landlock.
const ForceABIEnv = "OXIOS_TEST_LANDLOCK_ABI"

// Probe reports what the kernel offers; it runs once per process.
func Probe() Kernel {
	probeOnce.Do(func() { probed = probe() })
	return probed
}

func probe() Kernel {
	k := Kernel{Root: os.Geteuid() == 0}
	if v, err := ll.LandlockGetABIVersion(); err != nil {
		k.LandlockWhy = "Landlock is not available on this kernel (" + err.Error() + ")"
	} else {
		k.Landlock = v
	}
	if s := os.Getenv(ForceABIEnv); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n < k.Landlock {
			k.Landlock = n
			if n == 0 {
				k.LandlockWhy = "Landlock is not available on this kernel (forced by " + ForceABIEnv + ")"
			}
		}
	}
	k.NetNS, k.NetNSWhy = probeNetNS()
	k.Limits, k.LimitsWhy = probeLimits()
	k.Cgroup = cgroupStatus()
	return k
}

// The main goroutine keeps the process's main thread for itself, from
// here on: a goroutine of onThread that ran there would confine the main
// thread, which the runtime never ends (it wedges it instead), and the
// thread group's leader, what /proc/PID names, would share the Landlock
// domain of one agent, which could then read the daemon's environment.
func init() { runtime.LockOSThread() }

// errMainThread is onThread on the main thread, which it never confines.
var errMainThread = errors.New("sandbox: refusing to confine the daemon's main thread")

// onThread runs f on a new OS thread that dies with it, never on the main
// thread.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: whatever f changed of this thread (its network
		// namespace, capabilities, Landlock domain) dies with it.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			errc <- errMainThread
			return
		}
		errc <- f()
	}()
	return <-errc
}

func probeNetNS() (bool, string) {
	err := onThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) })
	if err != nil {
		return false, "the daemon cannot create network namespaces (" + err.Error() + "; it needs CAP_SYS_ADMIN)"
	}
	return true, ""
}

func probeLimits() (bool, string) {
	cmd := exec.Command("/bin/true")
	err := onThread(func() error {
		cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		return release(cmd.Process.Pid, nil)
	})
	if err != nil {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
		return false, "resource limits cannot be set before a program starts (ptrace: " + err.Error() + ")"
	}
	cmd.Wait()
	return true, ""
}

func cgroupStatus() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || !strings.HasPrefix(string(b), "0::") && !strings.Contains(string(b), "\n0::") {
		return "cgroup v2 is not in use for this daemon; limits are rlimits only"
	}
	return "cgroup v2 is not delegated to oxios (oxios does not manage cgroups); limits are rlimits only"
}

// The access rights of Landlock by ABI.
const (
	fsABI1    = (1 << 13) - 1
	fileRight = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate | ll.AccessFSIoctlDev
	readExec  = ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir
	readOnly  = ll.AccessFSReadFile | ll.AccessFSReadDir
)

func handledFS(abi int) uint64 {
	switch {
	case abi >= 5:
		return (1 << 16) - 1
	case abi >= 3:
		return (1 << 15) - 1
	case abi == 2:
		return (1 << 14) - 1
	case abi == 1:
		return fsABI1
	}
	return 0
}

// devices every program may use: read-write ones and read-only ones.
var (
	// Not /dev/tty: agents share the daemon's session, and its terminal
	// (oxios start --foreground) would take their keystrokes (TIOCSTI).
	devRW = []string{"/dev/null", "/dev/full"}
	devRO = []string{"/dev/zero", "/dev/urandom", "/dev/random"}
)

// plan is what Start will do for one program.
type plan struct {
	k      Kernel
	p      Policy
	abi    int
	netns  bool // a new network namespace
	loUp   bool // with its loopback up
	tcp    bool // Landlock denies TCP bind and connect
	limits bool
	// notApplied is what best_effort could not apply at the start;
	// unconfined, that Landlock was not applied at all.
	notApplied []string
	unconfined bool
}

// ownPathError is a path of the agent's own or of its spec that could not
// be granted.
type ownPathError struct{ err error }

func (e *ownPathError) Error() string { return e.err.Error() }

// Prepare decides what of p this kernel can apply: the sandbox the program
// will get, and, in enforce mode, an *UnavailableError when something
// asked for cannot be.
func Prepare(p Policy) (Effective, error) {
	_, eff, err := prepare(p)
	return eff, err
}

func prepare(p Policy) (*plan, Effective, error) {
	k := Probe()
	eff := Effective{Mode: p.Mode, Network: p.Network, Limits: p.Limits}
	if p.Mode == Off {
		eff.Network, eff.Limits = NetAny, Limits{}
		return nil, eff, nil
	}
	pl := &plan{k: k, p: p, abi: k.Landlock}
	eff.Landlock = k.Landlock
	eff.Read = slices.Concat(SystemRead, []string{"/proc", "/sys"}, p.Read)
	eff.Write = slices.DeleteFunc(slices.Concat([]string{p.Dir, p.Tmp}, p.Write), func(s string) bool { return s == "" })
	var missing []string
	if k.Landlock == 0 {
		missing = append(missing, "filesystem: "+k.LandlockWhy)
		eff.Read, eff.Write = nil, nil
	}
	if k.Landlock > 0 && k.Landlock < 6 {
		eff.Unenforced = append(eff.Unenforced, fmt.Sprintf("signal and abstract-socket scoping: Landlock ABI %d has none (6 needed)", k.Landlock))
	}
	switch p.Network {
	case NetNone:
		switch {
		case k.NetNS:
			pl.netns, eff.NetworkBy = true, "namespace"
			pl.tcp = k.Landlock >= 4
		case k.Landlock >= 4:
			pl.tcp, eff.NetworkBy = true, "landlock"
			eff.Unenforced = append(eff.Unenforced, "network none: only TCP is confined (Landlock); UDP is not, and "+k.NetNSWhy)
		default:
			missing = append(missing, "network none: "+k.NetNSWhy+", and Landlock cannot confine TCP before ABI 4")
		}
	case NetLoopback:
		if k.NetNS {
			pl.netns, pl.loUp, eff.NetworkBy = true, true, "namespace"
		} else {
			missing = append(missing, "network loopback: "+k.NetNSWhy+" (Landlock rules are by port, so cannot tell loopback from the internet)")
		}
	}
	if p.Limits != (Limits{}) {
		pl.limits = k.Limits
		if !k.Limits {
			missing = append(missing, "limits: "+k.LimitsWhy)
		}
	}
	if p.Limits.Processes > 0 && k.Root {
		eff.Unenforced = append(eff.Unenforced, "limits.processes: the kernel exempts uid 0 from RLIMIT_NPROC; oxios stops an agent whose process group reaches it")
	}
	eff.Unenforced = append(eff.Unenforced, k.Cgroup)
	if len(missing) > 0 {
		if p.Mode == Enforce {
			return nil, eff, &UnavailableError{Why: strings.Join(missing, "; ")}
		}
		eff.Unenforced = append(missing, eff.Unenforced...)
		if eff.NetworkBy == "" {
			eff.Network = NetAny // nothing enforces what was asked
		}
		if !pl.limits {
			eff.Limits = Limits{}
		}
	}
	return pl, eff, nil
}

// Start starts cmd under p and returns the sandbox it got. cmd must not
// have been started; Start keeps its SysProcAttr (Setpgid and the rest)
// and adds to it. In enforce mode nothing starts when any part of p
// cannot be applied; the error is an *UnavailableError.
func Start(cmd *exec.Cmd, p Policy) (Effective, error) {
	pl, eff, err := prepare(p)
	if err != nil {
		return eff, err
	}
	if pl == nil {
		return eff, cmd.Start()
	}
	if p.Tmp != "" {
		// The agent may have replaced it (with a symlink out, say): it is
		// made again, a real directory, and opened without following links.
		if fi, err := os.Lstat(p.Tmp); err == nil && (fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir()) {
			os.Remove(p.Tmp)
		}
		if err := os.MkdirAll(p.Tmp, 0o700); err != nil {
			return eff, fmt.Errorf("create the private temporary directory: %w", err)
		}
	}
	err = onThread(func() error { return pl.start(cmd) })
	eff.Unenforced = append(pl.notApplied, eff.Unenforced...)
	if pl.unconfined {
		eff.Landlock, eff.Read, eff.Write = 0, nil, nil
		if eff.NetworkBy == "landlock" {
			eff.Network, eff.NetworkBy = NetAny, ""
		}
	}
	return eff, err
}

// start confines the calling thread, which must be locked and must die
// afterwards, then starts cmd from it, so that cmd inherits the
// confinement and the daemon does not.
func (pl *plan) start(cmd *exec.Cmd) error {
	if pl.netns {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return &UnavailableError{Why: "network namespace: " + err.Error()}
		}
		if pl.loUp {
			if err := loopbackUp(); err != nil {
				return &UnavailableError{Why: "network loopback: " + err.Error()}
			}
		}
	}
	// Always, not only as root: a daemon given ambient capabilities
	// (CAP_SYS_ADMIN for namespaces, say) must not pass them on.
	if err := dropCapabilities(); err != nil {
		if pl.p.Mode == Enforce {
			return &UnavailableError{Why: "capabilities: " + err.Error()}
		}
		pl.notApplied = append(pl.notApplied, "capabilities: "+err.Error())
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &UnavailableError{Why: "no_new_privs: " + err.Error()}
	}
	if pl.abi > 0 {
		if err := pl.landlock(); err != nil {
			// A granted path that is gone or now a link is the agent's
			// doing, not the kernel's: no mode starts the program then.
			var pe *ownPathError
			if pl.p.Mode == Enforce || errors.As(err, &pe) {
				return &UnavailableError{Why: "Landlock: " + err.Error()}
			}
			pl.notApplied = append(pl.notApplied, "filesystem: Landlock: "+err.Error())
			pl.unconfined = true
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = pl.limits
	if err := cmd.Start(); err != nil {
		return err
	}
	if pl.limits {
		if err := release(cmd.Process.Pid, rlimits(pl.p.Limits)); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return &UnavailableError{Why: "limits: " + err.Error()}
		}
	}
	return nil
}

// landlock restricts the calling thread.
func (pl *plan) landlock() error {
	fs := handledFS(pl.abi)
	attr := ll.RulesetAttr{HandledAccessFS: fs}
	if pl.tcp {
		attr.HandledAccessNet = ll.AccessNetBindTCP | ll.AccessNetConnectTCP
	}
	if pl.abi >= 6 {
		attr.Scoped = ll.ScopeAbstractUnixSocket | ll.ScopeSignal
	}
	fd, err := ll.LandlockCreateRuleset(&attr, 0)
	if err != nil {
		return fmt.Errorf("create ruleset: %w", err)
	}
	defer unix.Close(fd)
	// add grants access beneath path: the agent's own and the spec's
	// paths, stored resolved and opened without following any link, so
	// that one an agent put in their place since is refused, not followed
	// out of the sandbox. (The system's paths are opened as they are: /bin
	// may be a link to /usr/bin.)
	add := func(path string, access uint64) error {
		f, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
		if errors.Is(err, unix.ELOOP) {
			return &ownPathError{fmt.Errorf("%s is now reached through a symlink; give the path it names", path)}
		}
		if err != nil {
			return &ownPathError{fmt.Errorf("%s: %w", path, err)}
		}
		defer unix.Close(f)
		var st unix.Stat_t
		if err := unix.Fstat(f, &st); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access &= fileRight
		}
		if err := ll.LandlockAddPathBeneathRule(fd, &ll.PathBeneathAttr{AllowedAccess: access & fs, ParentFd: f}, 0); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	err = withSystemRules(func(sys []sysRule) error {
		for _, r := range sys {
			if err := ll.LandlockAddPathBeneathRule(fd, &ll.PathBeneathAttr{AllowedAccess: r.access & fs, ParentFd: r.fd}, 0); err != nil {
				return fmt.Errorf("system path: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range pl.p.Read {
		if err := add(d, readExec); err != nil {
			return err
		}
	}
	for _, d := range slices.Concat([]string{pl.p.Dir, pl.p.Tmp}, pl.p.Write) {
		if d == "" {
			continue
		}
		if err := add(d, fs); err != nil {
			return err
		}
	}
	return ll.LandlockRestrictSelf(fd, 0)
}

// dropCapabilities empties every capability set of the calling thread
// (permitted, effective, inheritable, ambient). With no_new_privs, what it
// executes then gets none either, even as root: the kernel gives an exec
// no more than the permitted set it had, so setuid programs and file
// capabilities grant nothing.
func dropCapabilities() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capset(&hdr, &data[0])
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

type rlimit struct {
	res int
	v   uint64
}

func rlimits(l Limits) []rlimit {
	var out []rlimit
	add := func(res int, v int64, unit uint64) {
		if v > 0 {
			out = append(out, rlimit{res, uint64(v) * unit})
		}
	}
	add(unix.RLIMIT_DATA, l.MemoryMB, 1<<20)
	add(unix.RLIMIT_CPU, l.CPUSeconds, 1)
	add(unix.RLIMIT_NOFILE, l.OpenFiles, 1)
	add(unix.RLIMIT_NPROC, l.Processes, 1)
	add(unix.RLIMIT_FSIZE, l.FileSizeMB, 1<<20)
	return out
}

// release takes a child stopped at its exec (it asked to be traced), sets
// its limits and lets it go. The caller is the tracing thread.
func release(pid int, lims []rlimit) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if !ws.Stopped() {
		return fmt.Errorf("the program did not stop at exec (%v)", ws)
	}
	// The exec's SIGTRAP is ours; another signal that stopped it first
	// (sent to its group meanwhile) is delivered when it is let go. Limits
	// set at that stop hold across the exec still to come.
	sig := 0
	if s := ws.StopSignal(); s != unix.SIGTRAP {
		sig = int(s)
	}
	for _, l := range lims {
		cur := unix.Rlimit{}
		if err := unix.Prlimit(pid, l.res, nil, &cur); err != nil {
			return err
		}
		v := min(l.v, cur.Max) // never above what the daemon itself has
		hard := v
		if l.res == unix.RLIMIT_CPU && hard < cur.Max {
			hard++ // SIGXCPU at the limit, SIGKILL a second later if ignored
		}
		if err := unix.Prlimit(pid, l.res, &unix.Rlimit{Cur: v, Max: hard}, nil); err != nil {
			return err
		}
	}
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, uintptr(sig), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
