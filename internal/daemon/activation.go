package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// ListenFDEnv hands a listening socket to oxios as file descriptor 3,
// without the process id systemd's LISTEN_PID needs: "oxios start" sets it
// for the daemon it detaches, and a caller that holds the socket (a test,
// a supervisor of its own) for the oxios it runs.
const ListenFDEnv = "OXIOS_LISTEN_FD"

// listenFD is the first file descriptor of socket activation.
const listenFD = 3

// Handed is a listening socket handed to this process: File to hand it on
// to a child, Listener to serve on it.
type Handed struct {
	File     *os.File
	Listener net.Listener
}

// Addr is the address the socket is bound to.
func (h *Handed) Addr() string { return h.Listener.Addr().String() }

var handed struct {
	once sync.Once
	h    *Handed
	err  error
}

// Inherited returns the listening TCP socket handed to this process, or
// nil: by systemd's socket activation (LISTEN_PID is this process and
// LISTEN_FDS is 1, on file descriptor 3) or by OXIOS_LISTEN_FD=3. The
// variables are taken out of the environment, so that no child takes the
// socket for its own; later calls return the same socket.
func Inherited() (*Handed, error) {
	handed.once.Do(func() { handed.h, handed.err = inherit() })
	return handed.h, handed.err
}

func inherit() (*Handed, error) {
	fds, pid, own := os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_PID"), os.Getenv(ListenFDEnv)
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDNAMES")
	os.Unsetenv(ListenFDEnv)
	var source string
	switch {
	case own != "":
		if own != strconv.Itoa(listenFD) {
			return nil, fmt.Errorf("%s: must be %d, the descriptor the socket is handed over on (got %q)", ListenFDEnv, listenFD, own)
		}
		source = ListenFDEnv
	case fds != "" && pid == strconv.Itoa(os.Getpid()):
		if fds != "1" {
			return nil, fmt.Errorf("LISTEN_FDS: oxios serves on one socket (got %s)", fds)
		}
		source = "LISTEN_FDS"
	default:
		return nil, nil // none, or one meant for another process
	}
	// Never inherited further: an agent must not accept the API's
	// connections.
	syscall.CloseOnExec(listenFD)
	f := os.NewFile(listenFD, "listener")
	ln, err := net.FileListener(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: descriptor %d is not a listening socket: %w", source, listenFD, unwrapOp(err))
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		f.Close()
		return nil, fmt.Errorf("%s: descriptor %d is not a TCP socket (%s)", source, listenFD, ln.Addr().Network())
	}
	return &Handed{File: f, Listener: nonBlocking{tl}}, nil
}

// nonBlocking is a listener on a socket others hold too: whoever hands a
// socket over keeps it, and O_NONBLOCK belongs to the socket, not to a
// descriptor, so one of them may turn it off (os.File.Fd does, to hand
// it to a child). A blocking accept would then hold the listener past its
// Close, and the daemon's shutdown with it. Each Accept turns it on again.
type nonBlocking struct{ *net.TCPListener }

func (l nonBlocking) Accept() (net.Conn, error) {
	if rc, err := l.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), true) })
	}
	return l.TCPListener.Accept()
}
