package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/supervisor"
)

// Bucket is the key/value bucket of cron jobs and their runs.
const Bucket = "cron"

// FiresBucket holds one key per firing of a job's scheduled time, created
// by the one node that fires it (see claim); its keys age out after a day.
const FiresBucket = "cron_fires"

// Label marks the agents a job spawned with the job's name.
const Label = "oxios.cron"

// recentRuns is how many firings a job keeps.
const recentRuns = 10

// The cron vocabulary, defined in package oxios.
type (
	Def    = oxios.CronDef
	Fired  = oxios.CronFired
	Status = oxios.CronStatus
)

type jobState struct {
	// LastAt is the last scheduled firing, or when the job was enabled
	// again, for catching up after downtime.
	LastAt time.Time `json:"last_at"`
	// Since is when this node first had the job.
	Since time.Time `json:"since"`
	// Queued: a firing waits for the active run to end.
	Queued bool    `json:"queued,omitempty"`
	Runs   []Fired `json:"runs"`
}

// add keeps f: at most recentRuns runs and as many other firings.
func (st *jobState) add(f Fired) {
	count := map[bool]int{f.Action == "run": 1}
	kept := []Fired{f}
	for _, r := range st.Runs {
		if count[r.Action == "run"]++; count[r.Action == "run"] <= recentRuns {
			kept = append(kept, r)
		}
	}
	st.Runs = kept
}

var jobNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func invalid(field, format string, a ...any) error {
	return &oxios.InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks d and fills its defaults. The spec is checked as a spawn
// would check it (with d's defaults), but kept as given, so that each
// firing takes the defaults of its day.
func Validate(d *Def, defaults oxios.SpecDefaults) (Schedule, error) {
	if !jobNameRe.MatchString(d.Name) {
		return Schedule{}, invalid("name", "must be 1 to 64 letters, digits, '_' or '-', starting with a letter or digit (got %q)", d.Name)
	}
	sched, err := Parse(d.Schedule, d.Zone)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return Schedule{}, &oxios.InvalidError{Field: "schedule", Msg: pe.Error()}
		}
		return Schedule{}, &oxios.InvalidError{Field: "zone", Msg: err.Error()}
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
	if _, ok := d.Spec.Labels[Label]; ok {
		return Schedule{}, invalid("spec.labels."+Label, "is set by oxios to the job's name")
	}
	if len(d.Spec.Labels) >= 32 {
		return Schedule{}, invalid("spec.labels", "at most 31 labels (the job adds %s)", Label)
	}
	check := d.Spec // checked, not changed: firings take the defaults of their day
	if err := specError(supervisor.Normalize(&check, defaults)); err != nil {
		return Schedule{}, err
	}
	d.Spec.Kind = check.Kind // the one default that is no day's: what the job is
	return sched, nil
}

// specError names a spec's bad field as a field of the job.
func specError(err error) error {
	var inv *oxios.InvalidError
	if errors.As(err, &inv) {
		return &oxios.InvalidError{Field: "spec." + inv.Field, Msg: inv.Msg}
	}
	return err
}

// Spawner starts and looks up agents; *supervisor.Supervisor is one.
type Spawner interface {
	Spawn(ctx context.Context, spec oxios.Spec) (oxios.Record, error)
	// Stored is an agent's last stored record (another node's too).
	Stored(id string) (oxios.Record, error)
	List(f supervisor.Filter, limit int, cursor string) ([]oxios.Record, string)
	// Check validates a spec as Spawn would (its model too).
	Check(ctx context.Context, spec oxios.Spec) error
}

// Publisher publishes events; *bus.Bus is one.
type Publisher interface {
	PublishAsync(ev bus.Event) (*bus.Pending, error)
}

// Options configure a Service.
type Options struct {
	JS       jetstream.JetStream
	Replicas int
	// Node is this node: it stores the jobs created on it and those of its
	// config file, and fires any job of the cluster whose slot it claims.
	Node     string
	Agents   Spawner
	Bus      Publisher
	Defaults oxios.SpecDefaults
	// Config are the jobs of the config file (already validated).
	Config []Def
	Logger *slog.Logger
	// Runner, if set, is used instead of one on the real clock, and the
	// caller drives it (Tick): the service does not run it (tests).
	Runner *Runner
}

// Service runs a node's cron jobs and keeps them in the cron bucket.
type Service struct {
	o      Options
	kv     jetstream.KeyValue
	fires  jetstream.KeyValue
	runner *Runner
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	// wmu orders every change of a job: its write to the bucket and the
	// change in memory, so that writes never land out of order.
	wmu    sync.Mutex
	mu     sync.Mutex
	defs   map[string]*Def
	states map[string]*jobState
	broken map[string]string // job -> why it cannot be scheduled
	// conflicts are config jobs several nodes define differently.
	conflicts map[string]string
	// indexed is set once the other nodes' jobs are in; from then on a
	// change of one is scheduled at once.
	indexed bool

	// others are the other nodes' jobs, kept by a watch (cluster.go).
	others   map[string]map[string]*otherJob
	watching sync.WaitGroup
	serving  *nats.Subscription
	closed   bool
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
	fires, err := o.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: FiresBucket, History: 1, TTL: 24 * time.Hour,
		Storage: jetstream.FileStorage, Replicas: o.Replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", FiresBucket, err)
	}
	s := &Service{o: o, kv: kv, fires: fires, log: o.Logger, runner: o.Runner, defs: map[string]*Def{}, states: map[string]*jobState{},
		broken: map[string]string{}, conflicts: map[string]string{}, done: make(chan struct{}), others: map[string]map[string]*otherJob{}}
	drive := s.runner == nil
	if drive {
		s.runner = NewRunner()
	}
	s.runner.OnFiring = s.record
	s.runner.Logger = o.Logger
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	s.configJobs(ctx)
	now := s.runner.Now().UTC()
	for n, d := range s.defs {
		if _, ok := s.states[n]; !ok {
			s.states[n] = &jobState{Since: now}
			if d.Source == "api" && !d.CreatedAt.IsZero() {
				s.states[n].Since = d.CreatedAt
			}
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := s.joinCluster(ctx, rctx); err != nil {
		cancel()
		return nil, err
	}
	// Every job of the cluster is scheduled here, its own and the other
	// nodes': each scheduled time is fired by the node that claims it.
	s.mu.Lock()
	s.indexed = true
	s.mu.Unlock()
	for _, n := range s.names() {
		s.reschedule(n)
	}
	go func() {
		defer close(s.done)
		if drive {
			s.runner.Run(rctx)
		}
	}()
	return s, nil
}

// configJobs puts the config file's jobs in place, over an API job of
// the same name, and stores them, so that the other nodes list them too;
// stored config jobs the file no longer has are removed.
func (s *Service) configJobs(ctx context.Context) {
	inFile := map[string]bool{}
	for _, d := range s.o.Config {
		d.Source = "config"
		inFile[d.Name] = true
		hidden := false
		if old, ok := s.defs[d.Name]; ok && old.Source == "api" {
			s.log.Warn("a cron job of the config file hides one created through the API", "job", d.Name)
			hidden = true // kept as stored, for when the file no longer has it
		}
		if err := s.o.Agents.Check(context.Background(), d.Spec); err != nil {
			s.log.Error("a cron job of the config file has a spec that cannot spawn; its firings will fail", "job", d.Name, "err", err)
		}
		s.defs[d.Name] = &d
		if data, err := json.Marshal(d); err == nil && !hidden {
			if _, err := s.kv.Put(ctx, s.defKey(d.Name), data); err != nil {
				s.log.Warn("store a cron job of the config file", "job", d.Name, "err", err)
			}
		}
	}
	for name, d := range s.defs {
		if d.Source == "config" && !inFile[name] {
			delete(s.defs, name)
			s.kv.Purge(ctx, s.defKey(name))
			s.kv.Purge(ctx, s.stateKey(name))
		}
	}
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
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.serving.Unsubscribe()
	s.cancel()
	<-s.done
	s.watching.Wait()
}

// names lists every job of the cluster, sorted.
func (s *Service) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for n := range s.defs {
		seen[n] = true
	}
	for _, jobs := range s.others {
		for n, j := range jobs {
			if j.def != nil {
				seen[n] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// chosen is the definition of job name the cluster runs: of the nodes
// that have it (API jobs are on one node; a config-file job may be in
// several nodes' files), the first by name. Nodes that define it
// differently are a conflict, reported, and run once all the same.
func (s *Service) chosen(name string) (d Def, node, conflict string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type holder struct {
		node string
		d    Def
	}
	var hs []holder
	if d, ok := s.defs[name]; ok {
		hs = append(hs, holder{s.o.Node, *d})
	}
	for node, jobs := range s.others {
		if j := jobs[name]; j != nil && j.def != nil {
			hs = append(hs, holder{node, *j.def})
		}
	}
	if len(hs) == 0 {
		return Def{}, "", "", false
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].node < hs[j].node })
	for _, h := range hs[1:] {
		if !sameJob(hs[0].d, h.d) {
			conflict = fmt.Sprintf("nodes %s and %s define cron job %s differently; %s's definition runs (once for the cluster): make their config files agree", hs[0].node, h.node, name, hs[0].node)
			break
		}
	}
	return hs[0].d, hs[0].node, conflict, true
}

// sameJob reports whether two definitions of a job fire alike.
func sameJob(a, b Def) bool {
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// reschedule hands the runner the definition of job name the cluster
// runs, or removes the job when no node has it any more.
func (s *Service) reschedule(name string) {
	d, _, conflict, ok := s.chosen(name)
	s.mu.Lock()
	if conflict != "" && s.conflicts[name] != conflict {
		s.log.Warn("cron job defined differently on two nodes", "job", name, "conflict", conflict)
	}
	if conflict != "" {
		s.conflicts[name] = conflict
	} else {
		delete(s.conflicts, name)
	}
	s.mu.Unlock()
	if !ok {
		s.runner.Remove(name)
		return
	}
	sched, err := Parse(d.Schedule, d.Zone)
	s.mu.Lock()
	if err != nil {
		s.broken[d.Name] = err.Error()
		s.mu.Unlock()
		s.log.Error("cron job not scheduled", "job", d.Name, "err", err)
		return
	}
	delete(s.broken, d.Name)
	last, queued := s.lastRunLocked(d)
	s.mu.Unlock()
	s.runner.Put(Job{
		Name: d.Name, Schedule: sched, Overlap: Overlap(d.Overlap), Missed: Missed(d.Missed), Enabled: d.Enabled,
		LastRun: last, Queued: queued, Active: s.active,
		Live:  func() []string { return s.live(d.Name) },
		Claim: func(slot time.Time) bool { return s.claim(d.Name, slot) },
		Fire:  func(ctx context.Context, f Firing) (string, error) { return s.spawn(ctx, d, f) },
	})
	if _, _, _, ok := s.chosen(name); !ok {
		s.runner.Remove(name) // deleted while it was being scheduled
	}
}

// lastRunLocked is when job d last fired anywhere in the cluster (or,
// if it never did, since when it exists), for catching up, and whether
// this node has a firing of it queued. The caller holds s.mu.
func (s *Service) lastRunLocked(d Def) (last time.Time, queued bool) {
	if st := s.states[d.Name]; st != nil {
		last, queued = st.LastAt, st.Queued
	}
	for _, jobs := range s.others {
		if j := jobs[d.Name]; j != nil && j.state != nil && j.state.LastAt.After(last) {
			last = j.state.LastAt
		}
	}
	if last.IsZero() {
		switch st := s.states[d.Name]; {
		case d.Source == "api" && !d.CreatedAt.IsZero():
			last = d.CreatedAt
		case st != nil:
			last = st.Since
		}
	}
	return last, queued
}

// claim takes the firing of job name at slot for this node, unless
// another node took it: the firing is created once in the cluster.
func (s *Service) claim(name string, slot time.Time) bool {
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	_, err := s.fires.Create(ctx, name+"."+strconv.FormatInt(slot.UnixNano(), 10), []byte(s.o.Node))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		s.log.Warn("cron firing not claimed; this node does not fire it", "job", name, "slot", slot, "err", err)
	}
	return err == nil
}

// live lists the runs of job name that have not ended, on every node.
func (s *Service) live(name string) []string {
	states := []oxios.State{oxios.Queued, oxios.Starting, oxios.Running, oxios.WaitingApproval, oxios.Backoff}
	recs, _ := s.o.Agents.List(supervisor.Filter{States: states, Labels: map[string]string{Label: name}}, 0, "")
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

// active reports whether a job's agent is still queued or running.
func (s *Service) active(id string) bool {
	r, err := s.o.Agents.Stored(id)
	return err == nil && !r.State.Terminal()
}

// known reports whether job name exists on some node.
func (s *Service) known(name string) bool {
	_, _, _, ok := s.chosen(name)
	return ok
}

// spawn starts one run of d: its spec, labelled with the job's name,
// through the scheduler like any spawn. A scheduled firing is written down
// before it spawns: a daemon killed in between loses that run rather than
// run it twice.
func (s *Service) spawn(ctx context.Context, d Def, f Firing) (string, error) {
	if !f.Manual && !f.Queued {
		s.update(d.Name, func(st *jobState) { st.LastAt = f.At.UTC() })
	}
	if !s.known(d.Name) {
		return "", fmt.Errorf("cron job %s was deleted", d.Name)
	}
	spec := d.Spec
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[Label] = d.Name
	spec.Labels = labels
	if spec.Name == "" {
		spec.Name = d.Name
	}
	if !d.ByAdmin && d.Source != "config" {
		ctx = supervisor.Restricted(ctx)
	}
	r, err := s.o.Agents.Spawn(ctx, spec)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

// update changes job name's state and writes it, in order with every other
// change of the job. It does nothing for a job that no longer exists.
func (s *Service) update(name string, change func(*jobState)) {
	if !s.known(name) {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	st := s.states[name]
	if st == nil {
		st = &jobState{Since: s.runner.Now().UTC()}
		s.states[name] = st
	}
	change(st)
	data, _ := json.Marshal(st)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.kv.Put(ctx, s.stateKey(name), data); err != nil {
		s.log.Error("write cron job state", "job", name, "err", err)
	}
}

// record keeps a firing in the job's state and publishes it.
func (s *Service) record(f Firing) {
	run := Fired{At: f.At.UTC(), Action: string(f.Action), Manual: f.Manual, Missed: f.Missed, AgentID: f.RunID}
	if f.Err != nil {
		run.Action, run.Error = "error", f.Err.Error()
	}
	s.update(f.Job, func(st *jobState) {
		st.add(run)
		if !f.Manual && !f.Queued {
			st.LastAt = run.At // skipped and queued firings were not missed either
		}
		st.Queued = s.runner.Queued(f.Job) // the runner's, whatever order the writes come in
	})
	ev := map[string]any{"job": f.Job, "at": run.At, "manual": f.Manual}
	if !f.Slot.IsZero() {
		ev["slot"] = f.Slot.UTC() // the scheduled time: fired once in the cluster
	}
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
