package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/proc"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/tools"
)

// LLM runs language-model agents; internal/agent implements it.
type LLM interface {
	// Check validates an llm spec at spawn (its model and provider).
	Check(spec *Spec) error
	// Run works rec's goal until a final answer, an error or ctx's end.
	Run(ctx context.Context, rec Record, hooks Hooks) (Progress, error)
	// Resumable reports whether an agent that was running when the daemon
	// stopped can go on from a checkpoint.
	Resumable(ctx context.Context, rec Record) bool
}

// Hooks tell the supervisor what a language-model run is doing.
type Hooks struct {
	// Progress is called after each step with everything done so far.
	Progress func(Progress)
	// Waiting is called when the run starts (true) or stops (false)
	// waiting for a human's approval.
	Waiting func(bool)
	// Resume is set when the run goes on after a daemon restart (from a
	// checkpoint); otherwise it starts over.
	Resume bool
	// Spawner runs the run's sub-agents (spawn_agent): the supervisor
	// itself, handed to each run, so that the runtime needs no reference
	// to it (and a run recovered while the supervisor opens has it too).
	Spawner tools.Spawner
}

// Progress is what a language-model run has done so far.
type Progress struct {
	Model     string
	Output    string
	Steps     int
	ToolCalls []ToolCall
	Usage     Usage
}

// MaxDepth is how deep sub-agents may nest (an agent, its sub-agent, ...).
const MaxDepth = 3

// task is one run of an agent: a process, or a language-model loop.
type task interface {
	Done() <-chan struct{}
	// Stop ends the run: sig and, after grace, SIGKILL for a process.
	Stop(sig syscall.Signal, grace time.Duration) bool
	Exit() proc.Exit
}

// llmTask is a language-model run on its own goroutine.
type llmTask struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (t *llmTask) Done() <-chan struct{} { return t.done }

// Stop cancels the loop; model calls and tools end with their context.
func (t *llmTask) Stop(syscall.Signal, time.Duration) bool {
	t.cancel()
	<-t.done
	return false
}

func (t *llmTask) Exit() proc.Exit {
	<-t.done
	code := 0
	if t.err != nil {
		code = 1
	}
	return proc.Exit{Code: &code}
}

// reason says how the loop ended, for the record.
func (t *llmTask) reason() string {
	<-t.done
	if t.err != nil {
		return t.err.Error()
	}
	return "completed"
}

// startLLM starts a's loop. The caller holds a.mu.
func (s *Supervisor) startLLM(a *agent, resume bool) (task, error) {
	if s.o.LLM == nil {
		return nil, errors.New("llm agents are not available in this daemon")
	}
	if a.rec.DefaultDir {
		if err := os.MkdirAll(a.rec.Spec.Dir, 0o700); err != nil {
			return nil, errors.New("cannot create the workspace: " + err.Error())
		}
	}
	// Its exec-tool programs run in its sandbox: one that cannot be applied
	// in enforce mode fails the agent now, not at its first exec.
	eff, err := sandbox.Prepare(SandboxPolicy(a.rec.Spec, filepath.Join(a.rec.Spec.Dir, ".tmp")))
	a.rec.Sandbox = &eff
	if err != nil {
		return nil, err
	}
	if a.rec.OutputTruncated { // the whole output of the run before
		dctx, dcancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
		if err := s.outputs.Delete(dctx, a.id); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("delete the output of the previous run", "agent", a.id, "err", err)
		}
		dcancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &llmTask{cancel: cancel, done: make(chan struct{})}
	a.rec.Model, a.rec.Steps, a.rec.ToolCalls, a.rec.Usage = a.rec.Spec.Model, 0, nil, Usage{}
	a.setOutput("")
	rec := a.rec
	go func() {
		defer close(t.done)
		defer cancel()
		final, err := s.o.LLM.Run(ctx, rec, Hooks{Progress: func(p Progress) { s.progress(a, p) }, Waiting: func(w bool) { s.waiting(a, w) }, Resume: resume, Spawner: s})
		s.progress(a, final)
		t.err = err
	}()
	return t, nil
}

// progress records what an llm run has done so far.
func (s *Supervisor) progress(a *agent, p Progress) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rec.State != Running && a.rec.State != Starting && a.rec.State != WaitingApproval {
		return
	}
	if p.Model != "" {
		a.rec.Model = p.Model
	}
	if len(p.ToolCalls) > MaxToolCalls {
		p.ToolCalls = p.ToolCalls[len(p.ToolCalls)-MaxToolCalls:]
	}
	for i := range p.ToolCalls {
		p.ToolCalls[i].Error = Clip(p.ToolCalls[i].Error, maxCallText)
	}
	a.rec.Steps, a.rec.ToolCalls, a.rec.Usage = p.Steps, p.ToolCalls, p.Usage
	a.setOutput(p.Output)
	// Readers see every step at once; the bucket gets at most one write a
	// second of a running loop (its end is always written), so a long run
	// does not rewrite its growing record at every step.
	if time.Since(a.lastProgress) < time.Second {
		a.publishSnap()
		return
	}
	a.lastProgress = time.Now()
	s.save(a, "", nil)
}

// setOutput makes out the run's latest output: whole in memory, its start
// in the record. The caller holds a.mu.
func (a *agent) setOutput(out string) {
	if len(out) > MaxOutput {
		cut := len(out) - MaxOutput
		out = Clip(out, MaxOutput) + fmt.Sprintf("\n[output cut: %d more bytes]", cut)
	}
	a.output = out
	a.rec.Output, a.rec.OutputBytes, a.rec.OutputTruncated = Clip(out, OutputPreview), int64(len(out)), len(out) > OutputPreview
}

// storeOutput puts the whole output of a's ended run in the outputs bucket
// when its record holds only the start of it. An output that cannot be
// stored fails the agent, saying so: nobody is told of an answer that is
// not kept. The caller holds a.mu.
func (s *Supervisor) storeOutput(a *agent, st State, reason string) (State, string) {
	out := a.output
	a.output = ""
	if !a.rec.OutputTruncated || out == "" {
		// Short enough for the record; or no run since the stored one
		// (restarted, then cancelled while queued), whose output stays.
		return st, reason
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.outputs.PutBytes(ctx, a.id, []byte(out)); err != nil {
		s.log.Error("store an agent's output", "agent", a.id, "bytes", len(out), "err", err)
		return Failed, fmt.Sprintf("its output (%d bytes) could not be stored: %v", len(out), err)
	}
	return st, reason
}

// Output returns the whole output of agent id: of its ended run as stored,
// or the latest text of its running one (on another node: as its record
// last stored it).
func (s *Supervisor) Output(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	var r *Record
	if a, err := s.get(id); err == nil {
		a.mu.Lock()
		live, out := !a.rec.State.Terminal(), a.output
		a.mu.Unlock()
		if live && out != "" {
			return io.NopCloser(strings.NewReader(out)), int64(len(out)), nil
		}
		r = a.snap.Load()
	} else {
		rec, err := s.owner(id)
		if err != nil {
			return nil, 0, err
		}
		r = &rec
	}
	if !r.OutputTruncated {
		return io.NopCloser(strings.NewReader(r.Output)), int64(len(r.Output)), nil
	}
	obj, err := s.outputs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, 0, &NotFoundError{What: "the whole output of agent " + id}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the output of agent %s: %w", id, err)
	}
	info, err := obj.Info()
	if err != nil {
		obj.Close()
		return nil, 0, fmt.Errorf("read the output of agent %s: %w", id, err)
	}
	return obj, int64(info.Size), nil
}

// waiting moves a running llm agent to waiting_approval and back.
func (s *Supervisor) waiting(a *agent, w bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case w && a.rec.State == Running:
		a.rec.State = WaitingApproval
		s.save(a, "agent.waiting_approval", nil)
	case !w && a.rec.State == WaitingApproval:
		a.rec.State = Running
		s.save(a, "agent.resumed", nil)
	}
}

// SpawnSub runs a sub-agent for parentID's spawn_agent tool: through the
// scheduler like every agent, in the parent's workspace, with its policy
// and (unless given) its model. It waits for the sub-agent's end and
// returns its output; if ctx ends first, the sub-agent is killed.
func (s *Supervisor) SpawnSub(ctx context.Context, parentID, goal, name, model string) (string, error) {
	parent, err := s.Get(parentID)
	if err != nil {
		return "", err
	}
	depth := 1
	for p := parent; p.Spec.Parent != ""; depth++ {
		if p, err = s.Get(p.Spec.Parent); err != nil {
			break
		}
	}
	if depth >= MaxDepth {
		return "", fmt.Errorf("sub-agents may nest at most %d deep; do this part yourself", MaxDepth)
	}
	if model == "" {
		model = parent.Spec.Model
	}
	// The same call of a parent resumed after a restart finds the
	// sub-agent it had started, instead of starting a second one.
	key := tools.CallKey(ctx)
	if key != "" {
		if r, ok := s.subAgent(parentID, key); ok {
			return s.awaitSub(ctx, parentID, r.ID)
		}
	}
	labels := map[string]string{}
	for k, v := range parent.Spec.Labels {
		labels[k] = v
	}
	if key != "" {
		labels["oxios.call"] = key
	}
	if name == "" {
		name = parent.Name + "-sub"
	}
	// The parent lends its slot to the sub-agent while it waits, and takes
	// one again before it goes on: with every slot held by parents, their
	// sub-agents could otherwise never start.
	prio, _ := scheduler.ParsePriority(parent.Spec.Priority)
	s.lend(parentID)
	defer s.unlend(ctx, parentID, prio)
	child, err := s.Spawn(ctx, Spec{Kind: KindLLM, Name: name, Goal: goal, Model: model, Dir: parent.Spec.Dir,
		Policy: parent.Spec.Policy, Sandbox: parent.Spec.Sandbox, Priority: parent.Spec.Priority, Parent: parentID, Labels: labels})
	if err != nil {
		return "", err
	}
	return s.awaitSub(ctx, parentID, child.ID)
}

// subAgent finds the sub-agent that parentID's call key started.
func (s *Supervisor) subAgent(parentID, key string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		if r := a.snap.Load(); r.Spec.Parent == parentID && r.Spec.Labels["oxios.call"] == key {
			return *r, true
		}
	}
	return Record{}, false
}

// awaitSub waits for a sub-agent and returns its output; if ctx ends
// first, the sub-agent is killed.
func (s *Supervisor) awaitSub(ctx context.Context, parentID, childID string) (string, error) {
	child := Record{ID: childID}
	r, err := s.Wait(ctx, child.ID)
	if err != nil {
		return "", err
	}
	if ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
		defer cancel()
		s.Kill(kctx, child.ID, 0)
		return "", ctx.Err()
	}
	if r.State != Succeeded {
		return "", fmt.Errorf("sub-agent %s %s: %s", child.ID, r.State, r.Reason)
	}
	return r.Output, nil
}

// lend gives up parentID's slot while it waits for a sub-agent. Parallel
// spawn_agent calls of one answer lend it once: the first gives it up, the
// last to end takes it back (unlend).
func (s *Supervisor) lend(parentID string) {
	s.lendMu.Lock()
	defer s.lendMu.Unlock()
	if s.lent[parentID] == 0 {
		s.o.Scheduler.Release(parentID)
	}
	s.lent[parentID]++
}

// unlend ends one lend of parentID's slot; the last one queues the parent
// for a slot again and waits for it.
func (s *Supervisor) unlend(ctx context.Context, parentID string, prio scheduler.Priority) {
	s.lendMu.Lock()
	s.lent[parentID]--
	last := s.lent[parentID] <= 0
	if last {
		delete(s.lent, parentID)
	}
	s.lendMu.Unlock()
	if last {
		s.o.Scheduler.Reacquire(ctx, parentID, prio, true)
	}
}
