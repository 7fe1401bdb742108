// Package landlock is the part of Landlock's system-call interface that the
// sandbox uses, on golang.org/x/sys/unix, for the calling thread only.
//
// It stands in for go-landlock's landlock/syscall package, whose import of
// libcap's psx (for the all-threads calls oxios does not use: it confines
// one locked thread, which then starts the program) brings a cgo wrapper
// of pthread_create that forces external linking and cost the daemon
// 10 MB of idle memory.
package landlock

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Filesystem access rights (ABI 1 to 5) and network and scope rights
// (ABI 4 and 6), as the kernel numbers them.
const (
	AccessFSExecute    = unix.LANDLOCK_ACCESS_FS_EXECUTE
	AccessFSWriteFile  = unix.LANDLOCK_ACCESS_FS_WRITE_FILE
	AccessFSReadFile   = unix.LANDLOCK_ACCESS_FS_READ_FILE
	AccessFSReadDir    = unix.LANDLOCK_ACCESS_FS_READ_DIR
	AccessFSRemoveDir  = unix.LANDLOCK_ACCESS_FS_REMOVE_DIR
	AccessFSRemoveFile = unix.LANDLOCK_ACCESS_FS_REMOVE_FILE
	AccessFSMakeChar   = unix.LANDLOCK_ACCESS_FS_MAKE_CHAR
	AccessFSMakeDir    = unix.LANDLOCK_ACCESS_FS_MAKE_DIR
	AccessFSMakeReg    = unix.LANDLOCK_ACCESS_FS_MAKE_REG
	AccessFSMakeSock   = unix.LANDLOCK_ACCESS_FS_MAKE_SOCK
	AccessFSMakeFifo   = unix.LANDLOCK_ACCESS_FS_MAKE_FIFO
	AccessFSMakeBlock  = unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK
	AccessFSMakeSym    = unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	AccessFSRefer      = unix.LANDLOCK_ACCESS_FS_REFER
	AccessFSTruncate   = unix.LANDLOCK_ACCESS_FS_TRUNCATE
	AccessFSIoctlDev   = unix.LANDLOCK_ACCESS_FS_IOCTL_DEV

	AccessNetBindTCP    = unix.LANDLOCK_ACCESS_NET_BIND_TCP
	AccessNetConnectTCP = unix.LANDLOCK_ACCESS_NET_CONNECT_TCP

	ScopeAbstractUnixSocket = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	ScopeSignal             = unix.LANDLOCK_SCOPE_SIGNAL
)

// RulesetAttr is struct landlock_ruleset_attr up to ABI 6.
type RulesetAttr struct {
	HandledAccessFS  uint64
	HandledAccessNet uint64
	Scoped           uint64
}

// PathBeneathAttr is a rule granting access beneath the file ParentFd.
type PathBeneathAttr struct {
	AllowedAccess uint64
	ParentFd      int
}

// LandlockGetABIVersion returns the kernel's Landlock ABI.
func LandlockGetABIVersion() (int, error) {
	r, _, e := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// LandlockCreateRuleset creates a ruleset and returns its descriptor.
func LandlockCreateRuleset(attr *RulesetAttr, flags int) (int, error) {
	r, _, e := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr), uintptr(flags))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// LandlockAddPathBeneathRule adds a path rule to the ruleset.
func LandlockAddPathBeneathRule(rulesetFD int, attr *PathBeneathAttr, flags int) error {
	// The kernel's struct is packed: 8 bytes of rights, 4 of descriptor.
	packed := unix.LandlockPathBeneathAttr{Allowed_access: attr.AllowedAccess, Parent_fd: int32(attr.ParentFd)}
	_, _, e := syscall.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&packed)), uintptr(flags), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// LandlockRestrictSelf enforces the ruleset on the calling thread (and what
// it starts from now on).
func LandlockRestrictSelf(rulesetFD int, flags int) error {
	_, _, e := syscall.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(rulesetFD), uintptr(flags), 0)
	if e != 0 {
		return e
	}
	return nil
}
