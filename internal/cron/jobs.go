package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/supervisor"
)

func exists(name string) error {
	return fmt.Errorf("cron job %s already exists (remove it first): %w", name, oxios.ErrConflict)
}

// Create adds a job through the API.
func (s *Service) Create(ctx context.Context, d Def) (Status, error) {
	if _, err := Validate(&d, s.o.Defaults); err != nil {
		return Status{}, err
	}
	if err := s.o.Agents.Check(ctx, d.Spec); err != nil {
		return Status{}, specError(err)
	}
	d.Source, d.CreatedAt = "api", s.runner.Now().UTC()
	d.ByAdmin = !supervisor.IsRestricted(ctx)
	if node, ok := s.otherOwner(d.Name); ok {
		return Status{}, fmt.Errorf("cron job %s already exists on node %s (remove it first): %w", d.Name, node, oxios.ErrConflict)
	}
	s.wmu.Lock()
	s.mu.Lock()
	_, taken := s.defs[d.Name]
	s.mu.Unlock()
	if taken {
		s.wmu.Unlock()
		return Status{}, exists(d.Name)
	}
	data, _ := json.Marshal(d)
	if _, err := s.kv.Create(ctx, s.defKey(d.Name), data); err != nil {
		s.wmu.Unlock()
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Status{}, exists(d.Name)
		}
		return Status{}, fmt.Errorf("write cron job %s: %w", d.Name, err)
	}
	// A new job starts with no history, even if one of its name existed.
	st := &jobState{Since: d.CreatedAt}
	state, _ := json.Marshal(st)
	if _, err := s.kv.Put(ctx, s.stateKey(d.Name), state); err != nil {
		s.log.Error("write cron job state", "job", d.Name, "err", err)
	}
	def := d
	s.mu.Lock()
	s.defs[d.Name] = &def
	s.states[d.Name] = st
	s.mu.Unlock()
	s.wmu.Unlock()
	s.reschedule(d.Name)
	return s.Get(d.Name)
}

// lookup returns a copy of the definition of job name.
func (s *Service) lookup(name string) (Def, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.defs[name]
	if !ok {
		return Def{}, &oxios.NotFoundError{What: "cron job " + name}
	}
	return *d, nil
}

func readOnly(name string) error {
	return fmt.Errorf("cron job %s is defined in the config file and is read-only here; edit [cron.jobs.%s] and restart the daemon: %w", name, name, oxios.ErrConflict)
}

// Delete removes an API job and its history; its agents are left alone.
// Another node's job is deleted by that node.
func (s *Service) Delete(ctx context.Context, name string) error {
	if node, ok := s.elsewhere(name); ok {
		_, err := s.forward(ctx, node, request{Op: "delete", Name: name})
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
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
	s.mu.Lock()
	delete(s.defs, name)
	delete(s.states, name)
	delete(s.broken, name)
	s.mu.Unlock()
	s.reschedule(name) // gone, unless another node's config file has it
	// Its history, written by whichever nodes fired it.
	if lister, err := s.kv.ListKeysFiltered(ctx, "run.*."+name); err == nil {
		for k := range lister.Keys() {
			if _, n := splitKey(k); n == name {
				s.kv.Purge(ctx, k)
			}
		}
	}
	s.kv.Purge(ctx, s.stateKey(name))
	return nil
}

// SetEnabled enables or disables an API job. A job enabled again does not
// catch up what it missed while disabled, now or after a restart.
func (s *Service) SetEnabled(ctx context.Context, name string, on bool) (Status, error) {
	if node, ok := s.elsewhere(name); ok {
		rp, err := s.forward(ctx, node, request{Op: "enable", Name: name, On: on})
		return rp.Status, err
	}
	s.wmu.Lock()
	d, err := s.lookup(name)
	if err != nil {
		s.wmu.Unlock()
		return Status{}, err
	}
	if d.Source == "config" {
		s.wmu.Unlock()
		return Status{}, readOnly(name)
	}
	d.Enabled = on
	data, _ := json.Marshal(d)
	if _, err := s.kv.Put(ctx, s.defKey(name), data); err != nil {
		s.wmu.Unlock()
		return Status{}, fmt.Errorf("write cron job %s: %w", name, err)
	}
	s.mu.Lock()
	if cur, ok := s.defs[name]; ok {
		cur.Enabled = on
	}
	s.mu.Unlock()
	s.runner.SetEnabled(name, on)
	s.wmu.Unlock()
	if on {
		now := s.runner.Now().UTC()
		s.update(name, func(st *jobState) { st.LastAt = now })
	}
	return s.Get(name)
}

// Trigger fires a job now, whatever its schedule or whether it is
// enabled; its overlap policy still applies.
func (s *Service) Trigger(ctx context.Context, name string) (Fired, error) {
	if !s.known(name) {
		return Fired{}, &oxios.NotFoundError{What: "cron job " + name}
	}
	s.mu.Lock()
	why, broken := s.broken[name]
	s.mu.Unlock()
	if broken {
		return Fired{}, fmt.Errorf("cron job %s cannot be scheduled: %s: %w", name, why, oxios.ErrConflict)
	}
	f, ok := s.runner.Trigger(ctx, name)
	if !ok {
		return Fired{}, &oxios.NotFoundError{What: "cron job " + name}
	}
	run := Fired{At: f.At.UTC(), Action: string(f.Action), Manual: true, AgentID: f.RunID}
	if f.Err != nil {
		var inv *oxios.InvalidError
		if errors.As(f.Err, &inv) {
			return run, fmt.Errorf("the job's spec is no longer valid (spec.%s: %s): %w", inv.Field, inv.Msg, oxios.ErrConflict)
		}
		return run, f.Err
	}
	return run, nil
}

// Get returns a job with its next run and recent runs, as the cluster
// runs it.
func (s *Service) Get(name string) (Status, error) {
	d, node, conflict, ok := s.chosen(name)
	if !ok {
		return Status{}, &oxios.NotFoundError{What: "cron job " + name}
	}
	return s.view(d, node, conflict), nil
}

// List returns every job of the cluster, by name: one each, with the node
// whose definition runs.
func (s *Service) List() []Status {
	var out []Status
	for _, n := range s.names() {
		if j, err := s.Get(n); err == nil {
			out = append(out, j)
		}
	}
	if out == nil {
		out = []Status{}
	}
	return out
}

// view is job d of node with its next run and its recent firings on every
// node.
func (s *Service) view(d Def, node, conflict string) Status {
	j := Status{CronDef: d, Node: node}
	if next, ok := s.runner.Next(d.Name); ok && !next.IsZero() {
		j.NextRun = &next
	}
	s.mu.Lock()
	var runs []Fired
	if st := s.states[d.Name]; st != nil {
		runs = append(runs, st.Runs...)
	}
	for _, jobs := range s.others {
		if o := jobs[d.Name]; o != nil && o.state != nil {
			runs = append(runs, o.state.Runs...)
		}
	}
	j.Error = s.broken[d.Name]
	if conflict != "" {
		j.Error = conflict
	}
	s.mu.Unlock()
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].At.After(runs[b].At) })
	if len(runs) > 2*recentRuns {
		runs = runs[:2*recentRuns]
	}
	s.outcome(&j, runs)
	return j
}

// outcome fills in a job's recent firings, with their agents' states now,
// and its last run and outcome.
func (s *Service) outcome(j *Status, runs []Fired) {
	j.Recent = []Fired{}
	for _, r := range runs {
		if r.AgentID != "" {
			if rec, err := s.o.Agents.Stored(r.AgentID); err == nil {
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
}
