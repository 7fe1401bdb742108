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
	// Fire starts one run of the job and returns its id. It is told the
	// firing it starts (its time, manual or queued).
	Fire func(ctx context.Context, f Firing) (string, error)
	// Active reports whether the run with this id is still going.
	Active func(id string) bool
	// Live, if set, lists the job's runs still going in the whole
	// cluster, whichever node fired them; it decides overlap instead of
	// the runs this runner started.
	Live func() []string
	// Claim, if set, takes a scheduled firing (its slot) for this node:
	// false means another node took it, and this runner does nothing of
	// it. Manual and queued firings are not claimed.
	Claim func(slot time.Time) bool
	// LastRun is when the job last fired, or, if it never did, since when
	// it exists (zero: unknown); firings after it were missed.
	LastRun time.Time
	// Running are the ids of runs that may still be active (from before a
	// restart); Active decides.
	Running []string
	// Queued is a firing that waits for the active run to end.
	Queued bool
}

// Firing is what happened at one firing, for the caller to record and
// publish (cron.fired, cron.skipped).
type Firing struct {
	Job string
	At  time.Time
	// Slot is the scheduled time a firing stands for (zero for manual and
	// queued ones): the same on every node.
	Slot   time.Time
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
	// OnFiring is told of every firing, after Fire returned.
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
	// starting counts runs being started (Fire has not returned): they
	// count as active, so two firings at once never both run under skip.
	starting int
	queued   bool
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
	e := &entry{job: j, active: j.Running, queued: j.Queued}
	if old, ok := r.jobs[j.Name]; ok {
		e.active, e.queued = old.active, old.queued
	}
	fireNow, missed, next, slot := catchUp(j.Schedule, j.LastRun, now, j.Missed)
	e.next = next
	r.jobs[j.Name] = e
	r.mu.Unlock()
	if fireNow && j.Enabled {
		r.fire(context.Background(), e, Firing{Job: j.Name, At: now, Slot: slot, Missed: missed})
	}
	r.poke()
}

// Remove drops a job; a firing in progress does not record a run for it.
func (r *Runner) Remove(name string) {
	r.mu.Lock()
	delete(r.jobs, name)
	r.mu.Unlock()
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

// Trigger fires a job now, whatever its schedule (overlap still applies).
func (r *Runner) Trigger(ctx context.Context, name string) (Firing, bool) {
	r.mu.Lock()
	e, ok := r.jobs[name]
	r.mu.Unlock()
	if !ok {
		return Firing{}, false
	}
	f, ok := r.fire(ctx, e, Firing{Job: name, At: r.Now(), Manual: true})
	return f, ok
}

// Has reports whether the runner has job name.
func (r *Runner) Has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.jobs[name]
	return ok
}

// Queued reports whether a firing of the job waits for its active run.
func (r *Runner) Queued(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.jobs[name]
	return ok && e.queued
}

// Next returns when a job fires next (zero: never, or disabled).
func (r *Runner) Next(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.jobs[name]
	if !ok {
		return time.Time{}, false
	}
	if !e.job.Enabled {
		return time.Time{}, true
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
	type due struct {
		e *entry
		f Firing
	}
	var fire []due
	var soonest time.Time
	r.mu.Lock()
	for _, e := range r.jobs {
		if e.queued {
			r.prune(e)
		}
		if e.queued && len(e.active) == 0 && e.starting == 0 {
			e.queued = false
			fire = append(fire, due{e, Firing{Job: e.job.Name, At: now, Queued: true}})
		}
		if !e.job.Enabled || e.next.IsZero() {
			continue
		}
		if !e.next.After(now) {
			fire = append(fire, due{e, Firing{Job: e.job.Name, At: now, Slot: e.next}})
			e.next = e.job.Schedule.Next(now)
		}
		if !e.next.IsZero() && (soonest.IsZero() || e.next.Before(soonest)) {
			soonest = e.next
		}
	}
	r.mu.Unlock()
	sort.Slice(fire, func(i, j int) bool { return fire[i].e.job.Name < fire[j].e.job.Name })
	for _, d := range fire {
		r.fire(ctx, d.e, d.f)
	}
	return soonest
}

// prune drops ended runs. The caller holds r.mu.
func (r *Runner) prune(e *entry) {
	if e.job.Live != nil {
		e.active = e.job.Live()
		return
	}
	live := e.active[:0]
	for _, id := range e.active {
		if e.job.Active != nil && e.job.Active(id) {
			live = append(live, id)
		}
	}
	e.active = live
}

// fire runs one firing of e by its overlap policy. It reports false, and
// fires nothing, when the job was removed (or, for a scheduled firing,
// disabled) meanwhile.
func (r *Runner) fire(ctx context.Context, e *entry, f Firing) (Firing, bool) {
	r.mu.Lock()
	if r.jobs[f.Job] != e || !(e.job.Enabled || f.Manual || f.Queued) {
		r.mu.Unlock()
		return Firing{}, false
	}
	if claim := e.job.Claim; claim != nil && !f.Manual && !f.Queued {
		r.mu.Unlock()
		if !claim(f.Slot) {
			return Firing{}, false // another node fires this slot
		}
		r.mu.Lock()
		if r.jobs[f.Job] != e {
			r.mu.Unlock()
			return Firing{}, false
		}
	}
	r.prune(e)
	if f.Queued {
		if len(e.active)+e.starting > 0 {
			e.queued = true // another run started first: wait again
			r.mu.Unlock()
			return Firing{}, false
		}
		f.Action = Run // its turn has come
	} else {
		f.Action = OnFire(e.job.Overlap, len(e.active)+e.starting, e.queued)
	}
	fireFn := e.job.Fire
	switch {
	case f.Action == Queue:
		e.queued = true
	case f.Action == Run && fireFn != nil:
		e.starting++
	}
	r.mu.Unlock()
	if f.Action == Run && fireFn != nil {
		f.RunID, f.Err = fireFn(ctx, f)
		r.mu.Lock()
		e.starting--
		if f.Err == nil {
			e.active = append(e.active, f.RunID)
		}
		r.mu.Unlock()
	}
	if r.OnFiring != nil {
		r.OnFiring(f)
	}
	return f, true
}
