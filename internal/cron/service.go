package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/supervisor"
)

// Bucket is the key/value bucket of cron jobs and their runs.
const Bucket = "cron"

// Label marks the agents a job spawned with the job's name.
const Label = "oxios.cron"

// recentRuns is how many firings a job keeps.
const recentRuns = 10

// Def is a job's definition.
type Def struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	// Zone is an IANA time zone; empty is the daemon's local zone.
	Zone    string `json:"zone,omitempty"`
	Overlap string `json:"overlap"`
	Missed  string `json:"missed"`
	Enabled bool   `json:"enabled"`
	// Spec is what each firing spawns.
	Spec supervisor.Spec `json:"spec"`
	// Source is "api" or "config"; config jobs are read-only through the API.
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
}

// Fired is one firing of a job.
type Fired struct {
	At time.Time `json:"at"`
	// Action is run, skip (the previous run was active), queue (it runs
	// when the previous one ends) or error (the spawn failed).
	Action  string `json:"action"`
	Manual  bool   `json:"manual,omitempty"`
	Missed  int    `json:"missed,omitempty"`
	AgentID string `json:"agent_id,omitempty"`
	Error   string `json:"error,omitempty"`
	// State is the spawned agent's state now (not stored).
	State string `json:"state,omitempty"`
}

// Status is a job as the API shows it.
type Status struct {
	Def
	NextRun *time.Time `json:"next_run"`
	LastRun *time.Time `json:"last_run"`
	// LastOutcome is the state of the last firing's agent (succeeded,
	// failed, running, ...), or skipped, queued or error; empty: never.
	LastOutcome string `json:"last_outcome"`
	// Recent are the latest firings, newest first.
	Recent []Fired `json:"recent"`
}

type jobState struct {
	// LastAt is the last scheduled firing, for catching up after downtime.
	LastAt time.Time `json:"last_at"`
	Runs   []Fired   `json:"runs"`
}

var jobNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func invalid(field, format string, a ...any) error {
	return &supervisor.InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks d and fills its defaults. The spec is checked as a spawn
// would check it (with d's defaults), but kept as given, so that each
// firing takes the defaults of its day.
func (d *Def) Validate(defaults supervisor.SpecDefaults) (Schedule, error) {
	if !jobNameRe.MatchString(d.Name) {
		return Schedule{}, invalid("name", "must be 1 to 64 letters, digits, '_' or '-', starting with a letter or digit (got %q)", d.Name)
	}
	sched, err := Parse(d.Schedule, d.Zone)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return Schedule{}, &supervisor.InvalidError{Field: "schedule", Msg: pe.Error()}
		}
		return Schedule{}, &supervisor.InvalidError{Field: "zone", Msg: err.Error()}
	}
	o, err := ParseOverlap(d.Overlap)
	if err != nil {
		return Schedule{}, invalid("overlap", "%s", err.Error())
	}
	m, err := ParseMissed(d.Missed)
	if err != nil {
		return Schedule{}, invalid("missed", "%s", err.Error())
	}
	d.Overlap, d.Missed = string(o), string(m)
	check := d.Spec
	check.Labels = nil
	if err := check.Normalize(defaults); err != nil {
		var inv *supervisor.InvalidError
		if errors.As(err, &inv) {
			return Schedule{}, &supervisor.InvalidError{Field: "spec." + inv.Field, Msg: inv.Msg}
		}
		return Schedule{}, err
	}
	if len(d.Spec.Labels) >= 32 {
		return Schedule{}, invalid("spec.labels", "at most 31 labels (the job adds %s)", Label)
	}
	return sched, nil
}

// Spawner starts and looks up agents; *supervisor.Supervisor is one.
type Spawner interface {
	Spawn(ctx context.Context, spec supervisor.Spec) (supervisor.Record, error)
	Get(id string) (supervisor.Record, error)
}

// Publisher publishes events; *bus.Bus is one.
type Publisher interface {
	PublishAsync(ev bus.Event) (*bus.Pending, error)
}

// Options configure a Service.
type Options struct {
	JS       jetstream.JetStream
	Replicas int
	// Node runs the jobs created on it and those of its config file.
	Node     string
	Agents   Spawner
	Bus      Publisher
	Defaults supervisor.SpecDefaults
	// Config are the jobs of the config file (already validated).
	Config []Def
	Logger *slog.Logger
	// Runner, if set, is used instead of one on the real clock (tests).
	Runner *Runner
}

// Service runs a node's cron jobs and keeps them in the cron bucket.
type Service struct {
	o      Options
	kv     jetstream.KeyValue
	runner *Runner
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	defs   map[string]*Def
	states map[string]*jobState
}

func (s *Service) defKey(name string) string   { return "job." + s.o.Node + "." + name }
func (s *Service) stateKey(name string) string { return "run." + s.o.Node + "." + name }

// Open loads this node's jobs and starts firing them. Jobs whose firings
// fell while the daemon was down catch up by their missed-run policy.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := o.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	s := &Service{o: o, kv: kv, log: o.Logger, runner: o.Runner, defs: map[string]*Def{}, states: map[string]*jobState{}, done: make(chan struct{})}
	if s.runner == nil {
		s.runner = NewRunner()
	}
	s.runner.OnFiring = s.record
	s.runner.Logger = o.Logger
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	for _, d := range o.Config {
		d.Source = "config"
		if old, ok := s.defs[d.Name]; ok && old.Source == "api" {
			s.log.Warn("a cron job of the config file hides one created through the API", "job", d.Name)
		}
		s.defs[d.Name] = &d
	}
	names := make([]string, 0, len(s.defs))
	for n := range s.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := s.schedule(s.defs[n]); err != nil {
			s.log.Error("cron job not scheduled", "job", n, "err", err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		s.runner.Run(rctx)
	}()
	return s, nil
}

// load reads this node's stored jobs and their runs.
func (s *Service) load(ctx context.Context) error {
	lister, err := s.kv.ListKeysFiltered(ctx, "job."+s.o.Node+".*", "run."+s.o.Node+".*")
	if err != nil {
		return fmt.Errorf("list cron jobs: %w", err)
	}
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		switch kind, name := splitKey(key); kind {
		case "job":
			var d Def
			if json.Unmarshal(e.Value(), &d) == nil {
				s.defs[name] = &d
			}
		case "run":
			var st jobState
			if json.Unmarshal(e.Value(), &st) == nil {
				s.states[name] = &st
			}
		}
	}
	return nil
}

func splitKey(key string) (kind, name string) {
	parts := strings.SplitN(key, ".", 3)
	if len(parts) != 3 {
		return "", ""
	}
	return parts[0], parts[2]
}

// Close stops firing. Runs already spawned go on as agents.
func (s *Service) Close() {
	s.cancel()
	<-s.done
}

// schedule hands d to the runner.
func (s *Service) schedule(d *Def) error {
	sched, err := Parse(d.Schedule, d.Zone)
	if err != nil {
		return err
	}
	st := s.state(d.Name)
	var running []string
	for _, r := range st.Runs {
		if r.AgentID != "" {
			running = append(running, r.AgentID)
		}
	}
	def := *d
	s.runner.Put(Job{
		Name: d.Name, Schedule: sched, Overlap: Overlap(d.Overlap), Missed: Missed(d.Missed), Enabled: d.Enabled,
		LastRun: st.LastAt, Running: running, Active: s.active,
		Fire: func(ctx context.Context) (string, error) { return s.spawn(ctx, def) },
	})
	return nil
}

func (s *Service) state(name string) jobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.states[name]; ok {
		return *st
	}
	return jobState{}
}

// active reports whether a job's agent is still queued or running.
func (s *Service) active(id string) bool {
	r, err := s.o.Agents.Get(id)
	return err == nil && !r.State.Terminal()
}

// spawn starts one run of d: its spec, labelled with the job's name,
// through the scheduler like any spawn.
func (s *Service) spawn(ctx context.Context, d Def) (string, error) {
	spec := d.Spec
	labels := map[string]string{Label: d.Name}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	if spec.Name == "" {
		spec.Name = d.Name
	}
	r, err := s.o.Agents.Spawn(ctx, spec)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

// record keeps a firing in the job's state and publishes it.
func (s *Service) record(f Firing) {
	run := Fired{At: f.At.UTC(), Action: string(f.Action), Manual: f.Manual, Missed: f.Missed, AgentID: f.RunID}
	if f.Err != nil {
		run.Action, run.Error = "error", f.Err.Error()
	}
	s.mu.Lock()
	if _, ok := s.defs[f.Job]; !ok {
		s.mu.Unlock()
		return // deleted meanwhile
	}
	st := s.states[f.Job]
	if st == nil {
		st = &jobState{}
		s.states[f.Job] = st
	}
	if !f.Manual && !f.Queued {
		st.LastAt = run.At
	}
	st.Runs = append([]Fired{run}, st.Runs...)
	if len(st.Runs) > recentRuns {
		st.Runs = st.Runs[:recentRuns]
	}
	data, _ := json.Marshal(st)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.kv.Put(ctx, s.stateKey(f.Job), data); err != nil {
		s.log.Error("write cron job state", "job", f.Job, "err", err)
	}
	ev := map[string]any{"job": f.Job, "at": run.At, "manual": f.Manual}
	switch {
	case run.Action == "run":
		ev["queued"], ev["missed"] = f.Queued, f.Missed
		s.publish("cron.fired", f.RunID, ev)
	case run.Action == "error":
		ev["reason"] = "spawn failed: " + run.Error
		s.publish("cron.skipped", "", ev)
	case f.Action == Skip:
		ev["reason"] = "the previous run is still active (overlap skip)"
		s.publish("cron.skipped", "", ev)
	}
	if f.Err != nil {
		s.log.Warn("cron job could not spawn", "job", f.Job, "err", f.Err)
	}
}

func (s *Service) publish(typ, agentID string, data map[string]any) {
	if s.o.Bus == nil {
		return
	}
	b, _ := json.Marshal(data)
	if _, err := s.o.Bus.PublishAsync(bus.Event{Type: typ, AgentID: agentID, Data: b}); err != nil {
		s.log.Warn("publish", "type", typ, "err", err)
	}
}

// Create adds a job through the API.
func (s *Service) Create(ctx context.Context, d Def) (Status, error) {
	if _, err := d.Validate(s.o.Defaults); err != nil {
		return Status{}, err
	}
	d.Source, d.CreatedAt = "api", time.Now().UTC()
	s.mu.Lock()
	_, exists := s.defs[d.Name]
	s.mu.Unlock()
	if exists {
		return Status{}, fmt.Errorf("cron job %s already exists (remove it first): %w", d.Name, supervisor.ErrConflict)
	}
	data, _ := json.Marshal(d)
	if _, err := s.kv.Create(ctx, s.defKey(d.Name), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Status{}, fmt.Errorf("cron job %s already exists (remove it first): %w", d.Name, supervisor.ErrConflict)
		}
		return Status{}, fmt.Errorf("write cron job %s: %w", d.Name, err)
	}
	// A new job starts with no history, even if one of its name existed.
	s.kv.Purge(ctx, s.stateKey(d.Name))
	s.mu.Lock()
	s.defs[d.Name] = &d
	delete(s.states, d.Name)
	s.mu.Unlock()
	if err := s.schedule(&d); err != nil {
		return Status{}, err
	}
	return s.Get(d.Name)
}

// lookup returns the definition of job name.
func (s *Service) lookup(name string) (*Def, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.defs[name]
	if !ok {
		return nil, &supervisor.NotFoundError{What: "cron job " + name}
	}
	return d, nil
}

func readOnly(name string) error {
	return fmt.Errorf("cron job %s is defined in the config file and is read-only here; edit [cron.jobs.%s] and restart the daemon: %w", name, name, supervisor.ErrConflict)
}

// Delete removes an API job and its history; its agents are left alone.
func (s *Service) Delete(ctx context.Context, name string) error {
	d, err := s.lookup(name)
	if err != nil {
		return err
	}
	if d.Source == "config" {
		return readOnly(name)
	}
	if err := s.kv.Purge(ctx, s.defKey(name)); err != nil {
		return fmt.Errorf("delete cron job %s: %w", name, err)
	}
	s.runner.Remove(name)
	s.mu.Lock()
	delete(s.defs, name)
	delete(s.states, name)
	s.mu.Unlock()
	s.kv.Purge(ctx, s.stateKey(name))
	return nil
}

// SetEnabled enables or disables an API job.
func (s *Service) SetEnabled(ctx context.Context, name string, on bool) (Status, error) {
	d, err := s.lookup(name)
	if err != nil {
		return Status{}, err
	}
	if d.Source == "config" {
		return Status{}, readOnly(name)
	}
	s.mu.Lock()
	upd := *d
	upd.Enabled = on
	data, _ := json.Marshal(upd)
	s.mu.Unlock()
	if _, err := s.kv.Put(ctx, s.defKey(name), data); err != nil {
		return Status{}, fmt.Errorf("write cron job %s: %w", name, err)
	}
	s.mu.Lock()
	if cur, ok := s.defs[name]; ok {
		cur.Enabled = on
	}
	s.mu.Unlock()
	s.runner.SetEnabled(name, on)
	return s.Get(name)
}

// Trigger fires a job now, whatever its schedule or whether it is
// enabled; its overlap policy still applies.
func (s *Service) Trigger(ctx context.Context, name string) (Fired, error) {
	if _, err := s.lookup(name); err != nil {
		return Fired{}, err
	}
	f, ok := s.runner.Trigger(ctx, name)
	if !ok {
		return Fired{}, &supervisor.NotFoundError{What: "cron job " + name}
	}
	run := Fired{At: f.At.UTC(), Action: string(f.Action), Manual: true, AgentID: f.RunID}
	if f.Err != nil {
		return run, f.Err
	}
	return run, nil
}

// Get returns a job with its next run and recent runs.
func (s *Service) Get(name string) (Status, error) {
	d, err := s.lookup(name)
	if err != nil {
		return Status{}, err
	}
	s.mu.Lock()
	def := *d
	s.mu.Unlock()
	return s.view(def), nil
}

// List returns every job of this node, by name.
func (s *Service) List() []Status {
	s.mu.Lock()
	defs := make([]Def, 0, len(s.defs))
	for _, d := range s.defs {
		defs = append(defs, *d)
	}
	s.mu.Unlock()
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	out := make([]Status, len(defs))
	for i, d := range defs {
		out[i] = s.view(d)
	}
	return out
}

func (s *Service) view(d Def) Status {
	j := Status{Def: d, Recent: []Fired{}}
	if next, ok := s.runner.Next(d.Name); ok && d.Enabled && !next.IsZero() {
		j.NextRun = &next
	}
	st := s.state(d.Name)
	for _, r := range st.Runs {
		if r.AgentID != "" {
			if rec, err := s.o.Agents.Get(r.AgentID); err == nil {
				r.State = string(rec.State)
			} else {
				r.State = "deleted"
			}
		}
		j.Recent = append(j.Recent, r)
	}
	if len(j.Recent) > 0 {
		last := j.Recent[0]
		j.LastRun = &last.At
		switch last.Action {
		case "run":
			j.LastOutcome = last.State
		case "skip":
			j.LastOutcome = "skipped"
		case "queue":
			j.LastOutcome = "queued"
		default:
			j.LastOutcome = "error: " + last.Error
		}
	}
	return j
}
