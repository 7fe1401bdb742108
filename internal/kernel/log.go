package kernel

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/logfile"
)

// openLog opens the rotating daemon log. When detached, stdout and stderr
// follow the log across rotations.
func openLog(o Options) (*logfile.File, error) {
	lo := logfile.Options{MaxSize: int64(o.Config.Log.MaxSizeMB) << 20, MaxFiles: o.Config.Log.MaxFiles}
	if o.Detached {
		lo.OnRotate = daemon.RedirectStdio
	}
	f, err := logfile.Open(o.Home.LogPath(), lo)
	if err != nil {
		return nil, fmt.Errorf("open daemon log: %w", err)
	}
	return f, nil
}

var errAddrInUse = syscall.EADDRINUSE

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
