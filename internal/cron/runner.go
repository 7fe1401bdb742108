package cron

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Job is one cron job: when it fires, what it does and its policies.
type Job struct {
	Name     string
	Schedule Schedule
	Overlap  Overlap
	Missed   Missed
	Enabled  bool
	// Fire starts one run of the job and returns its id.
	Fire func(ctx context.Context) (string, error)
	// Active reports whether the run with this id is still going.
	Active func(id string) bool
	// LastRun is when the job last fired (zero: never).
	LastRun time.Time
	// Running are the ids of runs that may still be active (recorded by
	// an earlier daemon); Active decides.
	Running []string
}

// Firing is what happened at one firing, for the caller to record and
// publish (cron.fired, cron.skipped).
type Firing struct {
	Job    string
	At     time.Time
	Action Action
	RunID  string
	Err    error
	// Missed counts the firings a catch-up at boot stands for.
	Missed int
	// Manual is a Trigger; Queued a run that waited for the previous one.
	Manual bool
	Queued bool
}

// Runner fires jobs on time. Its clock is injectable for tests.
type Runner struct {
	Now   func() time.Time
	After func(d time.Duration) <-chan time.Time
	// OnFiring is told of every firing (from the runner's goroutine).
	OnFiring func(Firing)
	Logger   *slog.Logger

	mu   sync.Mutex
	jobs map[string]*entry
	wake chan struct{}
}

type entry struct {
	job    Job
	next   time.Time
	active []string
	queued bool
}

// NewRunner returns a runner on the real clock.
func NewRunner() *Runner {
	return &Runner{Now: time.Now, After: time.After, jobs: map[string]*entry{}, wake: make(chan struct{}, 1)}
}

// Put adds or replaces a job. A job that last ran before now catches up
// by its missed-run policy.
func (r *Runner) Put(j Job) {
	r.mu.Lock()
	now := r.Now()
	e := &entry{job: j, active: j.Running}
	if old, ok := r.jobs[j.Name]; ok {
		e.active, e.queued = old.active, old.queued
	}
	fireNow, missed, next := CatchUp(j.Schedule, j.LastRun, now, j.Missed)
	e.next = next
	r.jobs[j.Name] = e
	r.mu.Unlock()
	if fireNow && j.Enabled {
		r.fire(context.Background(), e, now, missed, false, false)
	}
	r.poke()
}

// SetEnabled enables or disables a job. A job enabled again fires next at
// its next time; what it missed while disabled is not caught up.
func (r *Runner) SetEnabled(name string, on bool) bool {
	r.mu.Lock()
	e, ok := r.jobs[name]
	if ok {
		e.job.Enabled = on
		e.next = e.job.Schedule.Next(r.Now())
	}
	r.mu.Unlock()
	r.poke()
	return ok
}

// Remove drops a job.
func (r *Runner) Remove(name string) {
	r.mu.Lock()
	delete(r.jobs, name)
	r.mu.Unlock()
	r.poke()
}

// Trigger fires a job now, whatever its schedule (overlap still applies).
func (r *Runner) Trigger(ctx context.Context, name string) (Firing, bool) {
	r.mu.Lock()
	e, ok := r.jobs[name]
	r.mu.Unlock()
	if !ok {
		return Firing{}, false
	}
	return r.fire(ctx, e, r.Now(), 0, true, false), true
}

// Next returns when a job fires next.
func (r *Runner) Next(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.jobs[name]
	if !ok {
		return time.Time{}, false
	}
	return e.next, true
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run fires due jobs until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	for {
		next := r.Tick(ctx, r.Now())
		wait := time.Second // the pace at which ended runs free queued ones
		if d := next.Sub(r.Now()); !next.IsZero() && d < wait {
			wait = max(d, 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-r.After(wait):
		}
	}
}

// Tick fires what is due at now — jobs whose time has come, and queued
// runs whose job has no active run any more — and returns the next firing
// time of any job (zero if none).
func (r *Runner) Tick(ctx context.Context, now time.Time) time.Time {
	type job struct {
		e      *entry
		queued bool
	}
	var due []job
	var soonest time.Time
	r.mu.Lock()
	for _, e := range r.jobs {
		r.prune(e)
		if e.queued && len(e.active) == 0 {
			e.queued = false
			due = append(due, job{e, true})
		}
		if !e.job.Enabled {
			continue
		}
		if !e.next.After(now) {
			due = append(due, job{e, false})
			e.next = e.job.Schedule.Next(now)
		}
		if soonest.IsZero() || e.next.Before(soonest) {
			soonest = e.next
		}
	}
	r.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].e.job.Name < due[j].e.job.Name })
	for _, d := range due {
		r.fire(ctx, d.e, now, 0, false, d.queued)
	}
	return soonest
}

// prune drops ended runs. The caller holds r.mu.
func (r *Runner) prune(e *entry) {
	live := e.active[:0]
	for _, id := range e.active {
		if e.job.Active != nil && e.job.Active(id) {
			live = append(live, id)
		}
	}
	e.active = live
}

// fire runs one firing of e by its overlap policy.
func (r *Runner) fire(ctx context.Context, e *entry, at time.Time, missed int, manual, queued bool) Firing {
	r.mu.Lock()
	r.prune(e)
	f := Firing{Job: e.job.Name, At: at, Missed: missed, Manual: manual, Queued: queued, Action: OnFire(e.job.Overlap, len(e.active), e.queued)}
	switch f.Action {
	case Queue:
		e.queued = true
	case Run:
		e.job.LastRun = at
	}
	fireFn := e.job.Fire
	r.mu.Unlock()
	if f.Action == Run && fireFn != nil {
		f.RunID, f.Err = fireFn(ctx)
		if f.Err == nil {
			r.mu.Lock()
			e.active = append(e.active, f.RunID)
			r.mu.Unlock()
		}
	}
	if r.OnFiring != nil {
		r.OnFiring(f)
	}
	return f
}
