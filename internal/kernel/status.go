package kernel

import (
	"context"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oxios/oxios/internal/agent"
	"github.com/oxios/oxios/internal/api"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/version"
)

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
func (k *Kernel) registerGauges(agents *supervisor.Supervisor, members *cluster.Members, js jetstream.JetStream) {
	reg := func(c prometheus.Collector) {
		if err := metrics.Registry.Register(c); err != nil {
			k.log.Warn("metrics", "err", err)
		}
	}
	reg(metrics.NewGaugeFunc("oxios_agents", "Agents of this node by state.", []string{"state"}, func(emit func(float64, ...string)) {
		st := agents.Stats(time.Now(), k.node)
		for _, s := range supervisor.States {
			emit(float64(st.ByState[s]), string(s))
		}
	}))
	reg(metrics.NewGaugeFunc("oxios_cluster_agents", "Agents of the whole cluster by node and state, as this node sees them.", []string{"node", "state"}, func(emit func(float64, ...string)) {
		for node, by := range agents.ByNode() {
			for _, s := range supervisor.States {
				emit(float64(by[s]), node, string(s))
			}
		}
	}))
	reg(metrics.NewGaugeFunc("oxios_node_up", "1 for each node of the cluster that is alive as this node sees it, 0 for one suspect, dead or left.", []string{"node", "state"}, func(emit func(float64, ...string)) {
		for _, n := range members.List() {
			up := 0.0
			if n.State == oxios.NodeAlive {
				up = 1
			}
			emit(up, n.Name, string(n.State))
		}
	}))
	reg(metrics.NewGaugeFunc("oxios_node_free_slots", "Free scheduler slots of each node, from its last heartbeat.", []string{"node"}, func(emit func(float64, ...string)) {
		for _, n := range members.List() {
			emit(float64(n.FreeSlots), n.Name)
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
		"replicas":             c.EffectiveReplicas(),
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
