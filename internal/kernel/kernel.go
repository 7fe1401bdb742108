// Package kernel assembles the daemon: it boots the parts in order, reports
// their readiness, and shuts them down in reverse order with a deadline each.
// It is the only package that knows every part.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/api"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/version"
)

// Options say how to run the daemon.
type Options struct {
	Config config.Config
	// ConfigPath is the file Config was read from (it may not exist).
	ConfigPath string
	Home       config.Home
	// Listen is the effective listen address (config or --listen).
	Listen string
	// Listener, if set, is a socket on Listen handed to the daemon (by
	// systemd's socket activation, or by whoever started it); the daemon
	// serves on it instead of binding Listen.
	Listener net.Listener
	// Detached is set when stdout and stderr already are the log file (the
	// daemon was started by `oxios start`). Otherwise the log is also
	// written to Stderr, for a user or service manager watching it.
	Detached bool
	Stderr   io.Writer
}

// Kernel is a running daemon.
type Kernel struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	node    string

	// tokens checks API tokens once the backbone is open.
	tokens    atomic.Pointer[security.Tokens]
	adminHash security.Hash

	mu     sync.Mutex
	states map[string]string // part name -> state
	order  []string
	damage map[string]string // part name -> what is wrong with it, while it runs
	ready  bool

	// What a reload changes (see reload.go), set as the parts boot.
	live liveParts
}

// Run runs the daemon until ctx is cancelled or it receives SIGTERM or
// SIGINT, then shuts it down gracefully; a second signal forces an exit. It
// takes the PID file first, so two daemons never run on one home, and
// releases it last.
func Run(ctx context.Context, o Options) (err error) {
	// Signals are caught before anything else, so that a SIGTERM at any
	// moment of boot leads to a graceful exit, never a half-written PID file.
	var sig signals
	ctx, stop := sig.catch(ctx)
	defer stop()

	tuneGC()
	pidf, err := takeHome(&o, &sig.held)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := pidf.Release(); rerr != nil && err == nil {
			err = fmt.Errorf("remove PID file: %w", rerr)
		}
	}()

	k, logFile, err := newKernel(o)
	if err != nil {
		return err
	}
	defer logFile.Close()
	sig.kernel.Store(k)
	return k.run(ctx)
}

// signals is what the signal handlers of Run reach: the kernel (for a
// reload, and its log) and the PID file (released on a forced exit), each
// set once it exists.
type signals struct {
	kernel atomic.Pointer[Kernel]
	held   atomic.Pointer[daemon.PIDFile]
}

func (s *signals) log() *slog.Logger {
	if k := s.kernel.Load(); k != nil {
		return k.log
	}
	return nil
}

// catch returns ctx cancelled by the first SIGTERM or SIGINT; a second one
// exits at once. SIGHUP reloads the configuration (it would end the
// process if it were not caught); one that comes before the daemon has a
// kernel is ignored (the file is read at boot anyway). stop ends the
// handling, waiting for a reload under way.
func (s *signals) catch(ctx context.Context) (context.Context, func()) {
	ctx, stopSignals := daemon.SignalContext(ctx,
		func(sg os.Signal) {
			if l := s.log(); l != nil {
				l.Info("received signal", "signal", sg.String())
			}
		},
		func() {
			if l := s.log(); l != nil {
				l.Warn("second signal; exiting now without a graceful shutdown")
			}
			if p := s.held.Load(); p != nil {
				p.Release()
			}
			os.Exit(1)
		})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone, hupStop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hupStop:
				return
			case <-hup:
			}
			k := s.kernel.Load()
			if k == nil {
				continue
			}
			k.log.Info("received signal", "signal", "hangup")
			if _, err := k.reload(context.Background()); err != nil {
				k.log.Error("reload refused; the running configuration stays", "err", err)
			}
		}
	}()
	return ctx, func() {
		signal.Stop(hup)
		close(hupStop)
		<-hupDone
		stopSignals()
	}
}

// takeHome makes the home, takes its PID file (kept in held at once, for a
// forced exit to release) and readies its directories. A restore killed
// during its swap is finished before anything else touches the home; its
// config is then the one to run.
func takeHome(o *Options, held *atomic.Pointer[daemon.PIDFile]) (*daemon.PIDFile, error) {
	if err := os.MkdirAll(o.Home.Dir, 0o700); err != nil {
		return nil, err
	}
	pidf, err := daemon.Acquire(o.Home.PIDPath(), o.Listen)
	if err != nil {
		return nil, err
	}
	held.Store(pidf)
	if did, err := FinishRestore(o.Home.Dir); err != nil {
		pidf.Release()
		return nil, err
	} else if did {
		if cfg, err := loadConfig(o.ConfigPath); err == nil {
			o.Config = cfg
		}
	}
	if err := o.Home.EnsureDirs(); err != nil {
		pidf.Release()
		return nil, err
	}
	return pidf, nil
}

// newKernel makes the kernel of o with its logger, which writes to the
// log file it returns (and to stderr in the foreground).
func newKernel(o Options) (*Kernel, io.Closer, error) {
	k := &Kernel{opts: o, started: time.Now(), node: o.Config.NodeName(), states: map[string]string{}, damage: map[string]string{}}
	logFile, err := openLog(o)
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = logFile
	if !o.Detached && o.Stderr != nil {
		w = io.MultiWriter(logFile, o.Stderr)
	}
	k.log, k.live.level = newLogger(w, o.Config.Log)
	slog.SetDefault(k.log) // for what logs without a logger of its own
	k.live.cfg, k.live.file = o.Config, o.Config
	if f, err := loadConfig(o.ConfigPath); err == nil {
		k.live.file = f // without command-line overrides such as --listen
	} else if errors.Is(err, os.ErrNotExist) {
		k.live.file = config.DefaultConfig()
	}
	k.live.boot = k.live.file
	return k, logFile, nil
}

// run serves the API, boots the parts, runs until ctx ends or the HTTP
// server fails, and shuts the parts down.
func (k *Kernel) run(ctx context.Context) error {
	o := k.opts
	k.log.Info("starting", "version", version.Get().Version, "pid", os.Getpid(), "home", o.Home.Dir, "listen", o.Listen, "node", k.node)
	adminHash, created, err := security.EnsureAdminToken(o.Home.AdminTokenPath())
	k.adminHash = adminHash
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if created {
		k.log.Info("created admin token", "path", o.Home.AdminTokenPath())
	}

	srv, handler, serveErr, err := k.serveHTTP(adminHash)
	if err != nil {
		return err
	}
	parts := k.parts(handler, srv)
	for _, p := range parts {
		k.setState(p.name, "starting")
	}

	booted, bootErr := k.boot(ctx, parts)
	if bootErr == nil {
		k.setReady(true)
		k.log.Info("ready", "listen", o.Listen, "boot_ms", time.Since(k.started).Milliseconds())
		if err := daemon.Notify("READY=1"); err != nil {
			k.log.Warn("sd_notify READY failed", "err", err)
		}
		select {
		case <-ctx.Done():
		case err := <-serveErr:
			bootErr = fmt.Errorf("HTTP server stopped: %w", err)
		}
	}

	k.log.Info("shutting down")
	daemon.Notify("STOPPING=1")
	k.setReady(false)
	k.shutdown(booted)
	srv.Close() // serving since before boot, even if boot stopped short of the http part
	if bootErr != nil {
		k.log.Error("daemon failed", "err", bootErr)
		return bootErr
	}
	k.log.Info("stopped")
	return nil
}

func (k *Kernel) setReady(ready bool) {
	k.mu.Lock()
	k.ready = ready
	k.mu.Unlock()
}

// serveHTTP binds the listener and serves the API. It runs before the other
// parts boot, so a taken port fails fast and /readyz reports boot progress;
// the backbone-backed routes answer 503 until the http part attaches them.
func (k *Kernel) serveHTTP(adminHash security.Hash) (*http.Server, *api.Server, <-chan error, error) {
	listen, ln := k.opts.Listen, k.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", listen); err != nil {
			if errors.Is(err, errAddrInUse) {
				return nil, nil, nil, &daemon.AddrInUseError{Addr: listen}
			}
			return nil, nil, nil, fmt.Errorf("listen on %s: %w", listen, err)
		}
	}
	if host, _, _ := net.SplitHostPort(listen); !isLoopback(host) {
		k.log.Warn("the API listens on a non-loopback address and is reachable from the network; every /api/ route requires a token", "listen", listen)
	}
	handler := api.New(api.Options{
		Logger: k.log,
		Authenticate: func(tok string) (security.Principal, bool) {
			if t := k.tokens.Load(); t != nil {
				return t.Authenticate(tok)
			}
			// Until the tokens bucket is open, only the admin token works.
			return security.Principal{Name: "admin@" + k.node, Role: security.Admin}, security.HashToken(tok).Equal(adminHash)
		},
		Readiness: k.readiness,
		Reload:    k.reload,
		Backup: func(ctx context.Context, w io.Writer) error {
			k.mu.Lock()
			parts := k.live.parts
			k.mu.Unlock()
			if parts == nil {
				return oxios.ErrStarting
			}
			return k.backupTo(ctx, parts.bb, parts.trail, w)
		},
		System: k.system,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: oxios.RequestReadTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(k.log.Handler(), slog.LevelWarn),
		ConnContext:       handler.ConnContext,
	}
	srv.RegisterOnShutdown(handler.Stop)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(handler.Listen(ln)) }()
	return srv, handler, serveErr, nil
}
