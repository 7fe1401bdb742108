package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/agent"
	"github.com/oxios/oxios/internal/api"
	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/version"
)

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
	members     *cluster.Members
}

// parts lists the daemon's parts in boot order; shutdown runs it backwards,
// so HTTP stops accepting requests first and the backbone closes last.
func (k *Kernel) parts(handler *api.Server, srv *http.Server) []part {
	w := &wiring{}
	return []part{
		k.backbonePart(w),
		k.busPart(w),
		k.clusterPart(w),
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
			o := backbone.Options{
				URL:          cfg.Backbone.URL,
				Credentials:  cfg.Backbone.Credentials,
				DataDir:      k.opts.Home.DataDir(),
				SyncAlways:   syncAlways,
				SyncInterval: syncInterval,
				Replicas:     cfg.EffectiveReplicas(),
				Name:         k.node,
				Logger:       k.log,
			}
			if cfg.EmbeddedCluster() {
				key, err := cluster.LoadKey(k.opts.Home.ClusterKeyPath())
				if err != nil {
					return err
				}
				if err := backbone.CheckDataFor(k.opts.Home.DataDir()); err != nil {
					return err
				}
				if o.Instance, err = k.opts.Home.Instance(); err != nil {
					return err
				}
				// A name another live node holds is refused before this node
				// becomes a peer of the cluster's JetStream.
				o.Precheck = func(ctx context.Context, nc *nats.Conn) error {
					return cluster.WhoHolds(ctx, nc, k.node, o.Instance)
				}
				c := cfg.Cluster
				o.Cluster = &backbone.Cluster{Listen: c.Listen, Peers: c.Peers, TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSCA: c.TLSCA,
					RoutePassword: cluster.Derive(key, "route"), ClientPassword: cluster.Derive(key, "client")}
			}
			w.bb, err = backbone.Open(ctx, o)
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

// clusterPart is the "cluster" part: this node's name is claimed (refused
// while another live node holds it) before anything of the node's is read
// or written, and its heartbeat kept until shutdown.
func (k *Kernel) clusterPart(w *wiring) part {
	cfg := k.opts.Config
	return part{
		name: "cluster",
		start: func(ctx context.Context) error {
			instance, err := k.opts.Home.Instance()
			if err != nil {
				return err
			}
			labels := cfg.NodeLabels
			if labels == nil {
				labels = map[string]string{}
			}
			w.members, err = cluster.Join(ctx, cluster.Options{JS: w.bb.JS, Replicas: w.bb.Replicas, Lease: cfg.Cluster.Lease.Duration,
				Beat: cfg.Cluster.Beat(), Fence: clustered(cfg), Bus: w.ev, Logger: k.log, Self: oxios.Node{Name: k.node, Address: daemon.URL(k.opts.Listen), Route: cfg.Cluster.Listen,
					Version: version.Get().Version, Labels: labels, Instance: instance}})
			return err
		},
		stop: func(ctx context.Context) error {
			if w.members != nil {
				w.members.Leave(ctx)
			}
			return nil
		},
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
			t, err := security.OpenTokens(ctx, w.bb.JS, k.adminHash, k.node, w.bb.Replicas, k.log)
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
			w.trail, err = audit.Open(ctx, w.bb.JS, audit.Options{KeyPath: k.opts.Home.AuditKeyPath(), Replicas: w.bb.Replicas, Node: k.node})
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
			o := supervisor.Options{
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
				NodeState:     w.members.State,
			}
			if clustered(cfg) {
				o.Nodes, o.Lease = w.members.List, cfg.Cluster.Lease.Duration
				o.Drained = func() bool { return w.members.Drained(k.node) }
				o.StillLost = w.members.Lost
			}
			w.agents, err = supervisor.Open(ctx, o)
			if err == nil {
				w.members.OnFence(w.agents.Fence, w.agents.Rejoin)
				w.members.SetLoad(func() (int, int, int) {
					snap := w.sched.Snapshot()
					return snap.Running, max(snap.Limits.MaxRunning-snap.Running, 0), snap.Limits.MaxRunning
				})
				k.registerGauges(w.agents, w.members, w.bb.JS)
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
			handler.Attach(&api.Services{State: w.state, Bus: w.ev, Agents: w.agents, Audit: w.trail, Tokens: k.tokens.Load(), Sessions: w.sessions, Approvals: w.approvals, Budgets: w.budgets, Cron: w.jobs, Nodes: w.members})
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
	kv, err := js.KeyValue(ctx, cluster.Bucket) // made by the cluster part
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

// clustered reports whether other daemons may share this one's backbone:
// an embedded cluster, or an external NATS. Agents are then placed across
// nodes, taken over from lost ones, and a node that cannot renew its
// lease fences itself.
func clustered(cfg config.Config) bool { return cfg.EmbeddedCluster() || cfg.Backbone.URL != "" }
