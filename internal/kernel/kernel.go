// Package kernel assembles the daemon: it boots the parts in order, reports
// their readiness, and shuts them down in reverse order with a deadline each.
// It is the only package that knows every part.
package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oxios/oxios/internal/agent"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oxios/oxios/internal/api"
	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
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
	// Detached is set when stdout and stderr already are the log file (the
	// daemon was started by `oxios start`). Otherwise the log is also
	// written to Stderr, for a user or service manager watching it.
	Detached bool
	Stderr   io.Writer
}

// part is one of the daemon's parts, with a uniform lifecycle: parts
// start in list order and stop in reverse order. stop must be safe to call
// after a start that failed half way: boot calls it then, to close what
// that start had opened (as Caddy's CleanerUpper after a failed
// provision).
type part struct {
	name  string
	start func(ctx context.Context) error
	stop  func(ctx context.Context) error
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
	pidf, err := takeHome(&o)
	if err != nil {
		return err
	}
	sig.held.Store(pidf)
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

// takeHome makes the home, takes its PID file and readies its
// directories. A restore killed during its swap is finished before
// anything else touches the home; its config is then the one to run.
func takeHome(o *Options) (*daemon.PIDFile, error) {
	if err := os.MkdirAll(o.Home.Dir, 0o700); err != nil {
		return nil, err
	}
	pidf, err := daemon.Acquire(o.Home.PIDPath(), o.Listen)
	if err != nil {
		return nil, err
	}
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
	listen := k.opts.Listen
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		if errors.Is(err, errAddrInUse) {
			return nil, nil, nil, &daemon.AddrInUseError{Addr: listen}
		}
		return nil, nil, nil, fmt.Errorf("listen on %s: %w", listen, err)
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
			return security.Principal{Name: "admin", Role: security.Admin}, security.HashToken(tok).Equal(adminHash)
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

// wiring holds what the parts open, for the parts after them.
type wiring struct {
	bb          *backbone.Backbone
	state       *store.Store
	ev          *bus.Bus
	agents      *supervisor.Supervisor
	trail       *audit.Log
	sessions    *security.Sessions
	approvals   *approval.Manager
	budgets     *budget.Service
	jobs        *cron.Service
	sched       *scheduler.Scheduler
	llm         *agent.Runtime
	checkpoints *agent.Checkpoints
}

// parts lists the daemon's parts in boot order; shutdown runs it backwards,
// so HTTP stops accepting requests first and the backbone closes last.
func (k *Kernel) parts(handler *api.Server, srv *http.Server) []part {
	w := &wiring{}
	return []part{
		k.backbonePart(w),
		k.busPart(w),
		k.storePart(w),
		k.tokensPart(w),
		k.auditPart(w),
		k.budgetPart(w),
		k.approvalsPart(w),
		k.runtimePart(w),
		k.supervisorPart(w),
		k.cronPart(w),
		k.httpPart(w, handler, srv),
	}
}

// backbonePart is the "backbone" part.
func (k *Kernel) backbonePart(w *wiring) part {
	cfg := k.opts.Config
	syncAlways, syncInterval, _ := cfg.Store.SyncPolicy() // validated
	return part{
		name: "backbone",
		start: func(ctx context.Context) (err error) {
			w.bb, err = backbone.Open(ctx, backbone.Options{
				URL:          cfg.Backbone.URL,
				Credentials:  cfg.Backbone.Credentials,
				DataDir:      k.opts.Home.DataDir(),
				SyncAlways:   syncAlways,
				SyncInterval: syncInterval,
				Replicas:     cfg.Backbone.Replicas,
				Name:         k.node,
				Logger:       k.log,
			})
			return err
		},
		stop: func(context.Context) error {
			if w.bb == nil {
				return nil
			}
			return w.bb.Close()
		},
	}
}

// busPart is the "bus" part.
func (k *Kernel) busPart(w *wiring) part {
	cfg := k.opts.Config
	return part{
		name: "bus",
		start: func(ctx context.Context) (err error) {
			w.ev, err = bus.Open(ctx, w.bb.JS, bus.Options{
				Node:     k.node,
				MaxAge:   cfg.Events.MaxAge.Duration,
				MaxBytes: int64(cfg.Events.MaxMB) << 20,
				Replicas: w.bb.Replicas,
			})
			return err
		},
		stop: func(context.Context) error { closeIf(w.ev); return nil },
	}
}

// storePart is the "store" part.
func (k *Kernel) storePart(w *wiring) part {
	return part{
		name: "store",
		start: func(ctx context.Context) (err error) {
			w.state, err = store.Open(ctx, w.bb.JS, store.Options{Bucket: "state", Replicas: w.bb.Replicas})
			return err
		},
		stop: func(context.Context) error { closeIf(w.state); return nil },
	}
}

// tokensPart is the "tokens" part.
func (k *Kernel) tokensPart(w *wiring) part {
	return part{
		name: "tokens",
		start: func(ctx context.Context) error {
			t, err := security.OpenTokens(ctx, w.bb.JS, k.adminHash, w.bb.Replicas, k.log)
			if err != nil {
				return err
			}
			if w.sessions, err = security.OpenSessions(ctx, w.bb.JS, t, w.bb.Replicas); err != nil {
				t.Close()
				return err
			}
			k.tokens.Store(t)
			return nil
		},
		stop: func(context.Context) error {
			if t := k.tokens.Load(); t != nil {
				t.Close()
			}
			return nil
		},
	}
}

// auditPart is the "audit" part.
func (k *Kernel) auditPart(w *wiring) part {
	return part{
		name: "audit",
		start: func(ctx context.Context) (err error) {
			w.trail, err = audit.Open(ctx, w.bb.JS, k.opts.Home.AuditKeyPath(), w.bb.Replicas)
			if err != nil {
				return err
			}
			if d := w.trail.Damage(); d != "" {
				// The daemon runs on; readiness, doctor and audit
				// verify say what is wrong.
				k.log.Error(d)
				k.setDamage("audit", d)
			}
			return k.auditConfig(ctx, w.bb.JS, w.bb.Replicas, w.trail)
		},
		stop: func(context.Context) error { return nil },
	}
}

// budgetPart is the "budget" part.
func (k *Kernel) budgetPart(w *wiring) part {
	return part{
		name: "budget",
		start: func(ctx context.Context) (err error) {
			w.budgets, err = budget.Open(ctx, w.bb.JS, w.bb.Replicas, k.node, w.ev, k.log)
			return err
		},
		stop: func(context.Context) error { closeIf(w.budgets); return nil },
	}
}

// approvalsPart is the "approvals" part: the human decisions asked calls
// wait for.
func (k *Kernel) approvalsPart(w *wiring) part {
	return part{
		name: "approvals",
		start: func(ctx context.Context) (err error) {
			w.approvals, err = approval.Open(ctx, w.bb.JS, w.bb.Replicas, w.ev, w.trail)
			return err
		},
		stop: func(context.Context) error { closeIf(w.approvals); return nil },
	}
}

// runtimePart is the "runtime" part: the llm runtime and the checkpoints
// its runs resume from. Its runs are the supervisor's, stopped by the
// supervisor part's stop, which comes first.
func (k *Kernel) runtimePart(w *wiring) part {
	cfg := k.opts.Config
	return part{
		name: "runtime",
		start: func(ctx context.Context) (err error) {
			w.checkpoints, err = agent.OpenCheckpoints(ctx, w.bb.JS, w.bb.Replicas)
			if err != nil {
				return err
			}
			prices := map[string]agent.Price{}
			for id, p := range cfg.Prices {
				prices[id] = agent.Price{Input: p.Input, Output: p.Output}
			}
			w.llm = agent.New(agent.Options{
				Providers: map[string]agent.ProviderConfig{
					"openai":    {BaseURL: cfg.Providers.OpenAI.BaseURL, APIKey: cfg.Providers.OpenAI.APIKey},
					"anthropic": {BaseURL: cfg.Providers.Anthropic.BaseURL, APIKey: cfg.Providers.Anthropic.APIKey},
					"ollama":    {BaseURL: cfg.Providers.Ollama.BaseURL, APIKey: cfg.Providers.Ollama.APIKey},
				},
				Prices:      prices,
				Policy:      cfg.ToolsPolicy(),
				Bus:         w.ev,
				State:       w.state,
				Audit:       w.trail,
				Approvals:   w.approvals,
				Checkpoints: w.checkpoints,
				Budgets:     w.budgets,
				Logger:      k.log,
			})
			return nil
		},
		stop: func(context.Context) error { return nil },
	}
}

// supervisorPart is the "supervisor" part: the scheduler and the agents,
// recovering those an earlier daemon left unfinished.
func (k *Kernel) supervisorPart(w *wiring) part {
	cfg := k.opts.Config
	return part{
		name: "supervisor",
		start: func(ctx context.Context) (err error) {
			w.sched = scheduler.New(scheduler.Limits{
				MaxRunning:      cfg.Scheduler.EffectiveMaxRunning(),
				MaxRunningLLM:   cfg.Scheduler.MaxRunningLLM,
				SpawnsPerMinute: cfg.Scheduler.SpawnsPerMinute,
			})
			w.agents, err = supervisor.Open(ctx, supervisor.Options{
				JS:            w.bb.JS,
				Replicas:      w.bb.Replicas,
				Bus:           w.ev,
				Scheduler:     w.sched,
				Node:          k.node,
				WorkspacesDir: k.opts.Home.WorkspacesDir(),
				LogDir:        filepath.Join(k.opts.Home.LogDir(), "agents"),
				LogMaxSize:    int64(cfg.Agents.LogMaxMB) << 20,
				LogMaxFiles:   cfg.Agents.LogMaxFiles,
				URL:           daemon.URL(k.opts.Listen),
				Home:          k.opts.Home.Dir,
				SecretsDir:    k.opts.Home.SecretsDir(),
				Defaults:      cfg.SpecDefaults(),
				LLM:           w.llm,
				Budgets:       w.budgets,
				OnEnd:         w.settle,
				Retain:        cfg.Agents.Retain,
				RetainFor:     cfg.Agents.RetainFor.Duration,
				Logger:        k.log,
			})
			if err == nil {
				k.registerGauges(w.agents, w.bb.JS)
				k.mu.Lock()
				k.live.parts = w
				k.mu.Unlock()
			}
			return err
		},
		stop: func(ctx context.Context) error {
			if w.agents != nil {
				w.agents.Close(ctx)
			}
			return nil
		},
	}
}

// settle is what an llm run's end leaves to settle: its pending approvals
// are rejected and its checkpoint dropped. Process agents have neither.
func (w *wiring) settle(r supervisor.Record) {
	if r.Kind != supervisor.KindLLM {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	w.approvals.AbandonAgent(ctx, r.ID, "the agent ended ("+string(r.State)+")")
	w.checkpoints.Delete(ctx, r.ID)
}

// cronPart is the "cron" part.
func (k *Kernel) cronPart(w *wiring) part {
	cfg := k.opts.Config
	return part{
		// Fires cron w.jobs; firings missed while the daemon was down
		// catch up by their policy.
		name: "cron",
		start: func(ctx context.Context) error {
			defs, err := cfg.CronJobs() // validated at load
			if err != nil {
				return err
			}
			w.jobs, err = cron.Open(ctx, cron.Options{JS: w.bb.JS, Replicas: w.bb.Replicas, Node: k.node, Agents: w.agents,
				Bus: w.ev, Defaults: cfg.SpecDefaults(), Config: defs, Logger: k.log})
			return err
		},
		stop: func(context.Context) error { closeIf(w.jobs); return nil },
	}
}

// httpPart is the "http" part.
func (k *Kernel) httpPart(w *wiring, handler *api.Server, srv *http.Server) part {
	return part{
		name: "http",
		// Already serving probes; now the backbone-backed routes too.
		start: func(context.Context) error {
			handler.Attach(&api.Services{State: w.state, Bus: w.ev, Agents: w.agents, Audit: w.trail, Tokens: k.tokens.Load(), Sessions: w.sessions, Approvals: w.approvals, Budgets: w.budgets, Cron: w.jobs})
			return nil
		},
		stop: func(ctx context.Context) error {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				return err
			}
			return nil
		},
	}
}

// boot starts parts in order and returns those that started.
func (k *Kernel) boot(ctx context.Context, parts []part) ([]part, error) {
	// A daemon killed during a backup left its snapshot files (secrets
	// included) in the home; none is being written before boot.
	k.removeStaleBackups(0)
	var booted []part
	for _, p := range parts {
		if ctx.Err() != nil {
			return booted, nil // asked to stop while booting
		}
		t := time.Now()
		if err := p.start(ctx); err != nil {
			k.setState(p.name, "failed")
			// What the failed start had opened is closed now: shutdown
			// stops only the parts that started.
			sctx, cancel := context.WithTimeout(context.Background(), k.opts.Config.Daemon.ShutdownTimeout.Duration)
			if cerr := stopWithin(sctx, p.stop); cerr != nil {
				k.log.Warn("cleaning up a part that failed to start", "part", p.name, "err", cerr)
			}
			cancel()
			return booted, fmt.Errorf("start %s: %w", p.name, err)
		}
		booted = append(booted, p)
		k.setState(p.name, "ready")
		k.log.Debug("part ready", "part", p.name, "ms", time.Since(t).Milliseconds())
	}
	return booted, nil
}

// shutdown stops parts in reverse boot order, each within the configured
// deadline; a part that overruns is logged and left behind.
func (k *Kernel) shutdown(parts []part) {
	timeout := k.opts.Config.Daemon.ShutdownTimeout.Duration
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		k.setState(p.name, "stopping")
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := stopWithin(ctx, p.stop)
		cancel()
		if err != nil {
			k.log.Warn("part did not stop cleanly", "part", p.name, "err", err, "deadline", timeout)
		}
		k.setState(p.name, "stopped")
	}
}

// closeIf closes c if it was opened (a part's stop after a failed start).
func closeIf[T any, P interface {
	*T
	Close()
}](c P) {
	if c != nil {
		c.Close()
	}
}

// stopWithin runs stop, but returns at ctx's deadline if stop has not
// returned by then (a close that waits on the backbone during a leader
// election, say): shutdown goes on to the next part, and the backbone's
// close, last, ends what is left waiting on it.
func stopWithin(ctx context.Context, stop func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- stop(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("still stopping at the deadline; going on without it: %w", ctx.Err())
	}
}

func (k *Kernel) setState(name, state string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.states[name]; !ok {
		k.order = append(k.order, name)
	}
	k.states[name] = state
}

// setDamage records what is wrong with a part that runs on regardless.
func (k *Kernel) setDamage(name, damage string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.damage[name] = damage
}

func (k *Kernel) readiness() api.Readiness {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := api.Readiness{Ready: k.ready, PID: os.Getpid()}
	for _, name := range k.order {
		st := k.states[name]
		r.Parts = append(r.Parts, api.PartStatus{Name: name, State: st, Damage: k.damage[name]})
		if d := k.damage[name]; d != "" {
			r.Damaged = append(r.Damaged, name+": "+d)
		}
		if st != "ready" {
			r.NotReady = append(r.NotReady, name)
		}
	}
	return r
}

func (k *Kernel) system() api.System {
	return api.System{
		VersionInfo:   version.Get(),
		Node:          k.node,
		PID:           os.Getpid(),
		StartedAt:     k.started.UTC(),
		UptimeSeconds: time.Since(k.started).Seconds(),
		Listen:        k.opts.Listen,
		Home:          k.opts.Home.Dir,
		Config:        k.configSummary(),
	}
}

// registerGauges adds the metrics read at each scrape: agents by state,
// the scheduler, and the bytes each stream and bucket holds.
func (k *Kernel) registerGauges(agents *supervisor.Supervisor, js jetstream.JetStream) {
	reg := func(c prometheus.Collector) {
		if err := metrics.Registry.Register(c); err != nil {
			k.log.Warn("metrics", "err", err)
		}
	}
	reg(metrics.NewGaugeFunc("oxios_agents", "Agents of this node by state.", []string{"state"}, func(emit func(float64, ...string)) {
		st := agents.Stats(time.Now())
		for _, s := range supervisor.States {
			emit(float64(st.ByState[s]), string(s))
		}
	}))
	reg(metrics.NewGaugeFunc("oxios_scheduler_agents", "Agents queued and running in the scheduler.", []string{"status"}, func(emit func(float64, ...string)) {
		snap := agents.Scheduler()
		emit(float64(snap.QueuedTotal), "queued")
		emit(float64(snap.Running), "running")
		emit(float64(snap.RunningLLM), "running_llm")
	}))
	reg(metrics.NewGaugeFunc("oxios_storage_bytes", "Bytes stored per JetStream stream (event log, audit trail, buckets).", []string{"stream"}, func(emit func(float64, ...string)) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		lister := js.ListStreams(ctx)
		for info := range lister.Info() {
			emit(float64(info.State.Bytes), info.Config.Name)
		}
	}))
}

// configSummary is what the dashboard's system page shows of the running
// configuration: the settings that shape behaviour, never a secret.
func (k *Kernel) configSummary() map[string]any {
	k.mu.Lock()
	c := k.live.cfg // as reloaded
	k.mu.Unlock()
	backbone := "embedded"
	if c.Backbone.URL != "" {
		backbone = "external"
	}
	var providers []string
	for name, p := range map[string]config.Provider{"openai": c.Providers.OpenAI, "anthropic": c.Providers.Anthropic} {
		if agent.HasKey(name, p.APIKey) {
			providers = append(providers, name)
		}
	}
	slices.Sort(providers)
	return map[string]any{
		"file":                 k.opts.ConfigPath,
		"backbone":             backbone,
		"replicas":             c.Backbone.Replicas,
		"store_sync":           c.Store.Sync,
		"events_max_age":       c.Events.MaxAge.String(),
		"events_max_mb":        c.Events.MaxMB,
		"max_running":          c.Scheduler.EffectiveMaxRunning(),
		"max_running_llm":      c.Scheduler.MaxRunningLLM,
		"spawns_per_minute":    c.Scheduler.SpawnsPerMinute,
		"agents_retain":        c.Agents.Retain,
		"agents_retain_for":    c.Agents.RetainFor.String(),
		"default_model":        c.Agent.DefaultModel,
		"max_steps":            c.Agent.MaxSteps,
		"agent_timeout":        c.Agent.Timeout.String(),
		"providers_with_keys":  providers,
		"policy_exec_allow":    c.Policy.Exec.Allow,
		"policy_network_allow": c.Policy.Network.Allow,
		"policy_ask":           c.Policy.Ask,
		"cron_jobs_in_file":    len(c.Cron.Jobs),
		"log_level":            c.Log.Level,
	}
}

// auditConfig appends config.changed to the audit trail when the config
// file differs from the one the last boot of this node read. The file's
// hash is kept in the internal bucket "nodes", which the API does not
// expose.
func (k *Kernel) auditConfig(ctx context.Context, js jetstream.JetStream, replicas int, trail *audit.Log) error {
	b, err := os.ReadFile(k.opts.ConfigPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil // unreadable here: the config was read at start, nothing to compare
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	// Replicated like every bucket: on a cluster, an R1 bucket lost with its
	// server would keep every daemon from booting (issue 15.9).
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "nodes", History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return fmt.Errorf("bucket nodes: %w", err)
	}
	key := k.node + ".config"
	prev := ""
	if e, err := kv.Get(ctx, key); err == nil {
		prev = string(e.Value())
	}
	if prev == hash {
		return nil
	}
	detail := map[string]any{"path": k.opts.ConfigPath, "sha256": hash}
	if prev != "" {
		detail["previous_sha256"] = prev
	}
	if _, err := trail.Append(ctx, audit.Entry{Actor: "node:" + k.node, Action: "config.changed", Resource: "config", Detail: detail}); err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, []byte(hash))
	return err
}
