package supervisor

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/proc"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
)

// cause is why a process stopped running.
type cause int

const (
	exited   cause = iota // by itself
	timedOut              // its spec's timeout
	killed                // a kill request
	restart               // a restart request
	shutdown              // the daemon is stopping
	lost                  // another node runs the agent now
	fenced                // this node cannot renew its lease
)

// start says why a run (re)starts: the reason its record shows, and
// whether it is the daemon's recovery, at boot, of a run that was going
// when it stopped (admitted already; an llm run goes on from its
// checkpoint).
type start struct {
	reason    string
	recovered bool
}

// recovery is the start of a run recovered at boot.
var recovery = start{reason: "daemon restart", recovered: true}

// run is the one goroutine that owns an admitted run of agent a, from
// starting to its end. why says why it (re)starts.
func (s *Supervisor) run(a *agent, why start) {
	defer s.runs.Done()
	for {
		// A recovered run is already admitted; its next model call is
		// checked against the budgets.
		if !why.recovered && !s.admit(a) {
			return
		}
		t, ok := s.launch(a, why)
		if !ok {
			return
		}
		c, exit := s.supervise(a, t)
		ended, final := exit.String(), false
		if exit.Limit != "" {
			ended = exit.Limit
		}
		if lt, isLLM := t.(*llmTask); isLLM {
			ended = lt.reason()
			// A budget limit is not cured by running again.
			final = errors.Is(lt.err, ErrBudget)
		}
		next, reason, ok := s.after(a, c, exit, ended, final)
		if !ok {
			return
		}
		why = start{reason: reason}
		if next > 0 {
			var cut bool
			if ok, cut = s.backoff(a, next); !ok {
				return
			}
			if cut {
				why.reason = "restart requested"
			}
		}
	}
}

// admit holds an llm agent back while a budget it is under is exhausted.
// It ends the agent failed with the budget's error, or, when its spec says
// wait, gives the slot back and leaves the agent queued until the budget
// frees or changes (checking again at each change), then queues it for a
// slot again. It reports false when the agent has ended or the daemon is
// stopping.
func (s *Supervisor) admit(a *agent) bool {
	if s.o.Budgets == nil || a.rec.Kind != KindLLM {
		return true
	}
	a.mu.Lock()
	a.started = true // a kill from now on is this goroutine's to handle
	a.mu.Unlock()
	waited := false
	for {
		a.mu.Lock()
		rec := a.rec
		a.mu.Unlock()
		until, changed, err := s.o.Budgets.Admit(rec)
		if err == nil {
			if !waited {
				return true
			}
			if !s.reacquire(a) {
				return false
			}
			// Holding a slot again: check once more, the budget may have
			// been used up meanwhile.
			waited = false
			a.mu.Lock()
			if a.rec.State == Queued {
				a.rec.Reason, a.rec.NextStartAt = "", nil
			}
			a.mu.Unlock()
			continue
		}
		a.mu.Lock()
		if ended := a.rec.State.Terminal(); ended || a.kill != nil || s.ctx.Err() != nil {
			a.mu.Unlock()
			return !ended // launch ends it, or leaves it for the next boot
		}
		if rec.Spec.Budget == nil || rec.Spec.Budget.OnExhausted != BudgetWait {
			a.rec.ExitCode, a.rec.Signal = nil, ""
			s.end(a, Failed, err.Error())
			a.mu.Unlock()
			return false
		}
		var next *time.Time
		if !until.IsZero() {
			next = &until
		}
		if a.rec.State != Queued || a.rec.Reason != err.Error() || !sameTime(a.rec.NextStartAt, next) {
			a.rec.State, a.rec.Reason, a.rec.NextStartAt = Queued, err.Error(), next
			s.save(a, "agent.queued", map[string]any{"reason": err.Error()})
		}
		a.mu.Unlock()
		if !waited {
			s.o.Scheduler.Release(a.id)
			waited = true
		}
		if !s.awaitBudget(a, until, changed) {
			return false
		}
	}
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// awaitBudget waits until the time a budget frees or a change of budgets.
// It reports false when the agent was killed meanwhile or the daemon is
// stopping.
func (s *Supervisor) awaitBudget(a *agent, until time.Time, changed <-chan struct{}) bool {
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until) + 10*time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-timeout:
			return true
		case <-changed:
			return true
		case <-s.ctx.Done():
			return false
		case <-a.wake:
			if s.killedWaiting(a) {
				return false
			}
		}
	}
}

// reacquire queues a for a slot again and waits for it. It reports false
// when the agent was killed meanwhile or the daemon is stopping.
func (s *Supervisor) reacquire(a *agent) bool {
	p, _ := scheduler.ParsePriority(a.rec.Spec.Priority)
	got := make(chan struct{})
	s.o.Scheduler.Submit(scheduler.Ticket{ID: a.id, Priority: p, LLM: true, Start: func() { close(got) }})
	for {
		select {
		case <-got:
			return true
		case <-s.ctx.Done():
			s.o.Scheduler.Cancel(a.id)
			return false
		case <-a.wake:
			if s.killedWaiting(a) {
				return false
			}
		}
	}
}

// killedWaiting ends a queued agent that was asked to die while it waited
// for a budget; end frees a slot it may have been given meanwhile.
func (s *Supervisor) killedWaiting(a *agent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rec.State.Terminal() {
		return true
	}
	if a.kill == nil {
		return false
	}
	s.o.Scheduler.Cancel(a.id)
	s.end(a, Killed, "cancelled")
	return true
}

// launch starts a's process and records it running. It reports false when
// the run ended instead (killed before it started, or unable to start).
func (s *Supervisor) launch(a *agent, why start) (task, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = true
	if a.lost {
		s.dropLost(a)
		return nil, false
	}
	if a.fence || s.fenced.Load() {
		s.halt(a)
		return nil, false
	}
	if a.kill != nil {
		r := a.kill.reason
		if a.rec.State == Queued {
			r = "cancelled"
		}
		s.end(a, Killed, r)
		return nil, false
	}
	if s.ctx.Err() != nil {
		return nil, false // shutting down; the record stays for the next boot
	}
	a.restart = false
	a.rec.State, a.rec.NextStartAt = Starting, nil
	if why.reason != "" {
		a.rec.Reason = why.reason
	}
	// Starting is shown but not written: the write that matters is the one
	// with the PID, right after the fork. A process started just before the
	// daemon died, whose PID was never written, is found at the next boot
	// by its OXIOS_AGENT_ID (see recover).
	a.publishSnap()
	var t task
	var err error
	pid, start := 0, uint64(0)
	if a.rec.Kind == KindLLM {
		t, err = s.startLLM(a, why.recovered)
	} else {
		var p *proc.Process
		if p, err = s.startProcess(a); err == nil {
			t, pid, start = p, p.PID, p.StartTime
		}
	}
	if err != nil {
		a.rec.ExitCode, a.rec.Signal = nil, ""
		s.end(a, Failed, err.Error())
		return nil, false
	}
	now := time.Now().UTC()
	a.rec.State, a.rec.PID, a.rec.ProcStart, a.rec.StartedAt = Running, pid, start, &now
	a.rec.ExitCode, a.rec.Signal = nil, ""
	data := map[string]any{"pid": pid, "restarts": a.rec.Restarts, "reason": a.rec.Reason}
	if a.rec.Kind == KindLLM {
		data = map[string]any{"model": a.rec.Model, "restarts": a.rec.Restarts, "reason": a.rec.Reason}
	}
	if err := s.save(a, "agent.started", data); err != nil {
		// Unrecorded, a process could not be found after a crash: stop it.
		t.Stop(syscall.SIGKILL, 0)
		a.rec.PID, a.rec.ProcStart = 0, 0
		s.end(a, Failed, "cannot write the agent record: "+err.Error())
		return nil, false
	}
	return t, true
}

// startProcess starts the process of a's spec, in its sandbox. Its errors
// read as the reason the agent failed. The caller holds a.mu.
func (s *Supervisor) startProcess(a *agent) (*proc.Process, error) {
	spec := a.rec.Spec
	if a.rec.DefaultDir {
		if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
			return nil, errors.New("cannot create the workspace: " + err.Error())
		}
	}
	pol := SandboxPolicy(spec, filepath.Join(s.o.WorkspacesDir, a.id, ".tmp"))
	env, err := s.environ(a.rec, pol)
	if err != nil {
		return nil, err
	}
	path, err := lookPath(spec.Command, spec.Dir, env)
	if err != nil {
		return nil, err
	}
	p, err := proc.Start(proc.Spec{
		Command: path, Args: spec.Args, Env: env, Dir: spec.Dir,
		LogPath: s.LogPath(a.id), LogMaxSize: s.o.LogMaxSize, LogMaxFiles: s.o.LogMaxFiles,
		Sandbox: &pol, Tag: "OXIOS_AGENT_ID=" + a.id,
	})
	if err != nil {
		var pe *fs.PathError
		var ue *sandbox.UnavailableError
		switch {
		case errors.As(err, &ue):
			eff, _ := sandbox.Prepare(pol)
			a.rec.Sandbox = &eff
			return nil, ue
		case errors.As(err, &pe) && errors.Is(pe.Err, syscall.EACCES):
			return nil, errors.New("cannot execute " + spec.Command + ": permission denied (outside the sandbox? give its directory in sandbox.read)")
		}
		return nil, errors.New("cannot start " + spec.Command + ": " + err.Error())
	}
	a.rec.Sandbox = &p.Sandbox
	return p, nil
}

// SandboxPolicy is the sandbox of the programs of the agent s, with tmp
// as their private temporary directory.
func SandboxPolicy(s Spec, tmp string) sandbox.Policy {
	sb := sandbox.Spec{Mode: sandbox.Enforce, Network: sandbox.NetAny}
	if s.Kind == KindLLM {
		sb.Network = sandbox.NetNone // a record from before sandboxes
	}
	if s.Sandbox != nil {
		sb = *s.Sandbox
	}
	if sb.Mode == sandbox.Off {
		return sandbox.Policy{Mode: sandbox.Off}
	}
	return sandbox.Policy{Mode: sb.Mode, Dir: s.Dir, Tmp: tmp, Read: sb.Read, Write: sb.Write, Network: sb.Network, Limits: sb.Limits}
}

// environ is an agent's whole environment: PATH (only the directories
// its sandbox may read), HOME (its working directory when sandboxed, the
// daemon's otherwise), LANG, TMPDIR, TMP and TEMP (its private temporary
// directory), the spec's variables over them, its secret variables, and
// OXIOS_AGENT_ID, OXIOS_NODE and OXIOS_URL (no credential). Nothing else of the
// daemon's environment reaches an agent.
func (s *Supervisor) environ(r Record, pol sandbox.Policy) ([]string, error) {
	vars := map[string]string{
		"PATH": pol.Path(os.Getenv("PATH")),
		"HOME": os.Getenv("HOME"),
		"LANG": os.Getenv("LANG"),
	}
	if pol.Mode != sandbox.Off {
		vars["HOME"] = r.Spec.Dir
		for _, k := range []string{"TMPDIR", "TMP", "TEMP"} {
			vars[k] = pol.Tmp
		}
	}
	if vars["PATH"] == "" {
		vars["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	if vars["LANG"] == "" {
		vars["LANG"] = "C.UTF-8"
	}
	for k, v := range r.Spec.Env {
		vars[k] = v
	}
	for _, k := range r.Spec.SecretEnv {
		v, err := s.secret(k)
		if err != nil {
			return nil, err
		}
		vars[k] = v
	}
	vars["OXIOS_AGENT_ID"] = r.ID
	vars["OXIOS_URL"] = s.o.URL
	vars["OXIOS_NODE"] = s.o.Node
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		if _, given := r.Spec.Env[k]; v != "" || given {
			env = append(env, k+"="+v)
		}
	}
	slices.Sort(env)
	return env, nil
}

// secret reads the value of secret variable name from secrets/env/name.
func (s *Supervisor) secret(name string) (string, error) {
	if s.o.SecretsDir == "" {
		return "", errors.New("secret_env " + name + ": this daemon has no secrets directory")
	}
	b, err := os.ReadFile(filepath.Join(s.o.SecretsDir, "env", name))
	if err != nil {
		return "", errors.New("secret_env " + name + ": cannot read secrets/env/" + name + " (create it, mode 0600)")
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// lookPath finds command the way the agent's own PATH would, not the
// daemon's. A command with a slash is taken relative to dir.
func lookPath(command, dir string, env []string) (string, error) {
	notFound := errors.New("executable not found: " + command)
	if strings.Contains(command, "/") {
		p := command
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", notFound
		}
		return p, nil
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, d := range filepath.SplitList(pathVar) {
		if d == "" || !filepath.IsAbs(d) {
			continue // a relative PATH entry would depend on the working directory
		}
		p := filepath.Join(d, command)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", notFound
}

// supervise waits for p to end and says why it ended.
func (s *Supervisor) supervise(a *agent, p task) (cause, proc.Exit) {
	sig := signals[a.rec.Spec.StopSignal]
	stopTimeout := dur(a.rec.Spec.StopTimeout)
	var deadline <-chan time.Time
	if t := dur(a.rec.Spec.Timeout); t > 0 {
		timer := time.NewTimer(t)
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		select {
		case <-p.Done():
			return exited, p.Exit()
		case <-deadline:
			p.Stop(sig, stopTimeout)
			return timedOut, p.Exit()
		case <-s.ctx.Done():
			if s.halted.Load() {
				return shutdown, proc.Exit{}
			}
			p.Stop(sig, min(stopTimeout, time.Duration(s.grace.Load())))
			<-p.Done()
			return shutdown, proc.Exit{}
		case <-a.wake:
			a.mu.Lock()
			k, r, l, f, lg := a.kill, a.restart, a.lost, a.fence, a.lostGrace
			a.mu.Unlock()
			switch {
			case l:
				p.Stop(sig, lg)
				return lost, p.Exit()
			case f:
				// The cluster runs it elsewhere from now on: at once.
				p.Stop(syscall.SIGKILL, 0)
				return fenced, p.Exit()
			case k != nil:
				grace := stopTimeout
				if k.grace >= 0 {
					grace = k.grace
				}
				p.Stop(sig, grace)
				return killed, p.Exit()
			case r:
				p.Stop(sig, stopTimeout)
				return restart, p.Exit()
			}
		}
	}
}

// after records how a run ended and decides what comes next: it returns
// ok=false when the agent has ended (or the daemon is stopping), otherwise
// the delay before the next start and the reason for it.
func (s *Supervisor) after(a *agent, c cause, e proc.Exit, why string, final bool) (delay time.Duration, reason string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case c == shutdown:
		return 0, "", false // the record stays running; the next boot recovers it
	case c == lost || a.lost:
		s.dropLost(a)
		return 0, "", false
	case c == fenced:
		s.halt(a)
		return 0, "", false
	}
	var uptime time.Duration
	if a.rec.StartedAt != nil {
		uptime = time.Since(*a.rec.StartedAt)
	}
	a.rec.ExitCode, a.rec.Signal, a.rec.PID, a.rec.ProcStart = e.Code, e.Signal, 0, 0
	if a.rec.Kind == KindLLM {
		a.rec.ExitCode = nil // a loop has no exit status; the reason says how it ended
	} else {
		s.publish(a.id, "agent.exited", map[string]any{"exit_code": e.Code, "signal": e.Signal, "uptime_ms": uptime.Milliseconds()})
	}
	// A kill that raced with the exit still ends the agent killed.
	if c == killed || (a.kill != nil && c != restart) {
		reason := "kill requested"
		if a.kill != nil {
			reason = a.kill.reason
		}
		s.end(a, Killed, reason)
		return 0, "", false
	}
	if c == restart || a.restart {
		a.rec.Backoffs, a.rec.RecentRestarts = 0, nil
		metrics.Restarts.WithLabelValues(a.rec.Kind).Inc()
		s.publish(a.id, "agent.restarting", map[string]any{"attempt": 0, "delay_ms": 0, "reason": "restart requested"})
		return 0, "restart requested", true
	}
	failed := c == timedOut || !e.Success()
	if c == timedOut {
		why = "timeout"
	}
	rs := a.rec.Spec.Restart
	if rs.Policy == Never || (rs.Policy == OnFailure && !failed) || (final && failed) {
		if failed {
			s.end(a, Failed, why)
		} else {
			s.end(a, Succeeded, why)
		}
		return 0, "", false
	}
	now := time.Now().UTC()
	if uptime >= dur(rs.ResetAfter) {
		a.rec.Backoffs = 0
	}
	window := dur(rs.Window)
	recent := a.rec.RecentRestarts[:0:0]
	for _, t := range a.rec.RecentRestarts {
		if now.Sub(t) < window {
			recent = append(recent, t)
		}
	}
	if len(recent) >= rs.MaxRestarts {
		a.rec.RecentRestarts = recent
		s.publish(a.id, "agent.gave_up", map[string]any{"restarts": a.rec.Restarts, "max_restarts": rs.MaxRestarts, "window": rs.Window, "last": why})
		s.end(a, Failed, "restart limit reached")
		return 0, "", false
	}
	delay = backoffDelay(a.rec.Backoffs, dur(rs.Backoff.Initial), dur(rs.Backoff.Max))
	a.rec.Backoffs++
	a.rec.Restarts++
	a.rec.RecentRestarts = append(recent, now)
	next := now.Add(delay)
	a.rec.State, a.rec.Reason, a.rec.NextStartAt = Backoff, why, &next
	metrics.Restarts.WithLabelValues(a.rec.Kind).Inc()
	s.save(a, "agent.restarting", map[string]any{"attempt": a.rec.Restarts, "delay_ms": delay.Milliseconds(), "reason": why})
	return delay, why, true
}

// backoffDelay is the wait before consecutive restart n (0-based): none for
// the first, then initial doubling up to max, each with ±20% jitter and
// never past max.
func backoffDelay(n int, initial, maxDelay time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	d := initial
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(d))
	return min(max(d+jitter, time.Millisecond), maxDelay)
}

// backoff waits out delay before the next start. It reports ok=false when
// the agent was killed meanwhile or the daemon is stopping, and cut when a
// restart request ended the wait early.
func (s *Supervisor) backoff(a *agent, delay time.Duration) (ok, cut bool) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true, false
		case <-s.ctx.Done():
			return false, false
		case <-a.wake:
			a.mu.Lock()
			if a.lost || a.fence {
				if a.lost {
					s.dropLost(a)
				} else {
					s.halt(a)
				}
				a.mu.Unlock()
				return false, false
			}
			k, r := a.kill, a.restart
			if k != nil {
				s.end(a, Killed, k.reason)
			} else if r {
				a.rec.Backoffs, a.rec.RecentRestarts = 0, nil
			}
			a.mu.Unlock()
			if k != nil {
				return false, false
			}
			if r {
				return true, true
			}
		}
	}
}
