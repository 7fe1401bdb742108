package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// Failover. Every node watches the whole agents bucket (remote.go). When
// a node is lost (dead: its lease ran out; or left), the others take over
// its unfinished agents: each survivor plans the same placement of them
// (place.go, with the lost node excluded) and claims those planned for
// itself, by a compare-and-set on each record's revision, so exactly one
// node wins each agent. A claim nobody made within half a lease (the
// planned node died too, or saw the cluster otherwise) is open to every
// survivor, still by compare-and-set.
//
// A node that lost an agent learns it from the watch (a later revision it
// did not write) or from a refused write, stops its run and forgets it,
// writing nothing. A node that cannot renew its lease fences itself
// (Fence): its runs stop at once and none starts, until it renews its
// lease (Rejoin) and takes back those still its own.

// failoverTick is how often lost nodes' agents are looked for.
const failoverTick = 100 * time.Millisecond

// moveTimeout bounds the hand-over of one agent of a drained node.
const moveTimeout = 30 * time.Second

// claimTimeout bounds one claim's write: while the agents stream elects a
// new leader (its leader was on the lost node), claims fail fast and are
// made again at the next round, all of them at once.
const claimTimeout = 2 * time.Second

// failover takes over the agents of lost nodes until the supervisor closes.
func (s *Supervisor) failover() {
	defer s.watching.Done()
	t := time.NewTicker(failoverTick)
	defer t.Stop()
	noticed := map[string]time.Time{}
	claiming := &claims{ids: map[string]bool{}}
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.adoptOrphans(noticed, claiming, now)
		}
	}
}

// claims are the takeovers under way, one at most per agent.
type claims struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (c *claims) start(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids[id] {
		return false
	}
	c.ids[id] = true
	return true
}

func (c *claims) done(id string) {
	c.mu.Lock()
	delete(c.ids, id)
	c.mu.Unlock()
}

// lostNode says whether node is lost, and how.
func (s *Supervisor) lostNode(node string, now time.Time) (string, bool) {
	if s.o.NodeState == nil {
		return "", false
	}
	switch s.o.NodeState(node) {
	case oxios.NodeDead:
		return "node " + node + " lost", true
	case oxios.NodeLeft:
		return "node " + node + " left", true
	case "":
		// Not in the cluster at all (gone for long, or never back after the
		// whole cluster restarted): once this node has heard every beat.
		if now.Sub(s.opened) > s.o.Lease {
			return "node " + node + " lost", true
		}
	}
	return "", false
}

type orphan struct {
	r   Record
	rev uint64
	why string
}

// adoptOrphans claims the unfinished agents of lost nodes planned for
// this node, and those nobody claimed for half a lease.
func (s *Supervisor) adoptOrphans(noticed map[string]time.Time, claiming *claims, now time.Time) {
	if s.fenced.Load() || s.isClosed() {
		return
	}
	var orphans []orphan
	s.remote.mu.Lock()
	for id, r := range s.remote.recs {
		if r.State.Terminal() || s.remote.revs[id] == 0 {
			continue
		}
		if why, ok := s.lostNode(r.Node, now); ok {
			orphans = append(orphans, orphan{*r, s.remote.revs[id], why})
		}
	}
	s.remote.mu.Unlock()
	still := map[string]bool{}
	for _, o := range orphans {
		still[o.r.ID] = true
		if _, ok := noticed[o.r.ID]; !ok {
			noticed[o.r.ID] = now
		}
	}
	for id := range noticed {
		if !still[id] {
			delete(noticed, id)
		}
	}
	slices.SortFunc(orphans, func(a, b orphan) int { return strings.Compare(a.r.ID, b.r.ID) })
	extra := map[string]int{}
	confirmed := map[string]bool{}
	for _, o := range orphans {
		target, why, err := s.place(o.r.Spec, o.r.Node, extra)
		if err != nil {
			// Pinned to the lost node, or no other node matches: it waits
			// for one (its own node takes it back when it returns).
			continue
		}
		extra[target]++
		if target != s.o.Node {
			if now.Sub(noticed[o.r.ID]) < s.o.Lease/2 {
				continue
			}
			why = "no node claimed it within half a lease"
		}
		if s.o.StillLost != nil {
			// Judged on a watch that may lag, or the node is back since:
			// its heartbeat is read afresh, once a round.
			still, ok := confirmed[o.r.Node]
			if !ok {
				still = s.o.StillLost(s.ctx, o.r.Node)
				confirmed[o.r.Node] = still
			}
			if !still {
				continue
			}
		}
		if !claiming.start(o.r.ID) {
			continue // its claim is under way
		}
		if !s.beginServe() {
			claiming.done(o.r.ID)
			continue
		}
		// Each claim on its own: one waiting on the backbone holds up no
		// other.
		go func() {
			defer s.watching.Done()
			defer claiming.done(o.r.ID)
			// The index may lag: after the loss of a stream's leader a watch
			// stalls for seconds. The record is read afresh before the claim.
			r, rev, ok := s.fresh(o.r.ID)
			if !ok || r.Node != o.r.Node || r.State.Terminal() {
				return
			}
			if _, err := s.takeover(r, rev, o.why, "failover: "+o.why+"; "+why, true); err != nil && !isLostRace(err) {
				s.log.Debug("take over an agent of a lost node; trying again", "agent", o.r.ID, "node", o.r.Node, "err", err)
			}
		}()
	}
}

// fresh reads agent id's record from the bucket and takes it into the
// index (unless it is this node's own).
func (s *Supervisor) fresh(id string) (Record, uint64, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, oxios.BackboneTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		return Record{}, 0, false
	}
	var r Record
	if json.Unmarshal(e.Value(), &r) != nil || r.ID != id {
		return Record{}, 0, false
	}
	if _, err := s.get(id); err != nil && r.Node != s.o.Node {
		s.remote.mu.Lock()
		newer := e.Revision() > s.remote.revs[id]
		s.remote.mu.Unlock()
		if newer {
			s.remote.set(id, &r, e.Revision())
		}
	}
	return r, e.Revision(), true
}

// isLostRace is a compare-and-set another node won.
func isLostRace(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == 10164) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, ErrConflict)
}

// takeover makes agent r, stored at rev by another node, this node's, and
// starts it here, with reason. lostNode says its node is gone: a running
// process agent is restarted by its restart policy (one whose policy is
// never ends failed), an llm agent goes on from its last checkpoint. A
// queued agent queues here. The compare-and-set on rev makes one node the
// winner; the others get its error.
func (s *Supervisor) takeover(r Record, rev uint64, reason, placed string, lostNode bool) (*agent, error) {
	from := r.Node
	rec := r
	rec.Node, rec.Placed = s.o.Node, placed
	rec.PID, rec.ProcStart, rec.QueuePosition, rec.QueueReason, rec.NextStartAt = 0, 0, 0, "", nil
	if rec.DefaultDir {
		rec.Spec.Dir = filepath.Join(s.o.WorkspacesDir, rec.ID)
	}
	fail, resume := false, false
	if r.State != Queued {
		switch {
		case lostNode && r.Kind == KindProcess && r.Spec.Restart.Policy == Never:
			fail = true
		case r.Kind == KindLLM && s.o.LLM != nil:
			ctx, cancel := context.WithTimeout(s.ctx, oxios.BackboneTimeout)
			resume = s.o.LLM.Resumable(ctx, r)
			cancel()
		}
		rec.State, rec.Reason = Queued, reason
		if lostNode && !fail && r.Kind == KindProcess {
			rec.Restarts++
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	a := newAgent(rec)
	a.seen.Store(rev) // the lost node's writes, which the watch may bring late, are not news
	a.mu.Lock()
	defer a.mu.Unlock()
	// Registered before the write: its own write, seen by the watch, is
	// then known for this node's.
	s.mu.Lock()
	if _, had := s.agents[a.id]; had || s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("agent %s is this node's already: %w", a.id, ErrConflict)
	}
	s.agents[a.id] = a
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, claimTimeout)
	nrev, err := s.kv.Update(ctx, r.ID, b, rev)
	cancel()
	if err != nil && !isLostRace(err) {
		nrev, err = s.settleClaim(a.id, err)
	}
	if err != nil {
		s.mu.Lock()
		if s.agents[a.id] == a {
			delete(s.agents, a.id)
		}
		s.mu.Unlock()
		return nil, err
	}
	a.rev = nrev
	a.seen.Store(nrev)
	s.remote.set(a.id, nil, 0)
	s.log.Info("took over an agent", "agent", a.id, "from", from, "reason", reason)
	s.publish(a.id, "agent.moved", map[string]any{"from": from, "to": s.o.Node, "reason": reason, "placed": placed})
	if fail {
		a.rec.ExitCode, a.rec.Signal = nil, ""
		s.end(a, Failed, reason)
		return a, nil
	}
	s.submitFor(a, start{reason: reason, recovered: resume})
	return a, nil
}

// settleClaim finds out whether a claim whose write failed with werr (a
// timeout: it may have landed) was stored after all, by reading the record
// from the stream's leader; it returns the record's revision if it was.
func (s *Supervisor) settleClaim(id string, werr error) (uint64, error) {
	for deadline := time.Now().Add(oxios.BackboneTimeout); time.Now().Before(deadline) && s.ctx.Err() == nil; {
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		r, rev, err := s.leaderGet(ctx, id)
		cancel()
		if err == nil {
			if r.Node == s.o.Node {
				return rev, nil
			}
			return 0, werr
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	s.log.Error("a claim of an agent may have been stored without this node knowing it", "agent", id, "err", werr)
	return 0, werr
}

// lose hands agent a over to the node that took it (its record r, at
// rev): its run here stops, after grace, and this node forgets it without
// writing anything.
func (s *Supervisor) lose(a *agent, r *Record, rev uint64, grace time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.lost {
		a.lost, a.lostGrace = true, grace
		s.log.Warn("another node runs an agent of this node now; its run here stops", "agent", a.id, "node", r.Node)
	}
	s.remote.set(a.id, r, rev)
	s.letGo(a)
}

// letGo stops a lost agent: at once when it has no run under way, or
// through its run's goroutine. The caller holds a.mu.
func (s *Supervisor) letGo(a *agent) {
	switch {
	case !a.started:
		s.o.Scheduler.Cancel(a.id)
		s.dropLost(a)
	case a.halted || a.rec.State.Terminal():
		s.dropLost(a)
	default:
		a.poke()
	}
}

// dropLost forgets a lost agent here. The caller holds a.mu.
func (s *Supervisor) dropLost(a *agent) {
	if a.dropped {
		return
	}
	a.dropped, a.lost, a.halted = true, true, false
	a.kill, a.restart = nil, false
	s.mu.Lock()
	if s.agents[a.id] == a {
		delete(s.agents, a.id)
	}
	s.mu.Unlock()
	s.o.Scheduler.Release(a.id)
	select {
	case <-a.done:
	default:
		close(a.done)
	}
}

// halt leaves a's run stopped by fencing, its record as stored. The
// caller holds a.mu.
func (s *Supervisor) halt(a *agent) {
	a.halted, a.fence = true, false
	s.o.Scheduler.Release(a.id)
}

// Fence stops every run of this node at once and starts none: the node
// cannot renew its lease, and the cluster runs its agents elsewhere.
// Records are left as they are.
func (s *Supervisor) Fence() {
	s.fenced.Store(true)
	// All at once: one agent whose lock is held by a write waiting on the
	// backbone does not hold up the others.
	var wg sync.WaitGroup
	for _, a := range s.own() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.mu.Lock()
			if !a.rec.State.Terminal() && !a.lost && !a.halted {
				a.fence = true
				a.poke()
			}
			a.mu.Unlock()
		}()
	}
	wg.Wait()
}

// Rejoin ends fencing once this node has renewed its lease: agents another
// node took over meanwhile are forgotten here; the others go on, each
// from where its record stands (an llm agent from its last checkpoint).
// It returns at once (the heartbeat must go on); the work is done on a
// goroutine of its own, which reads each record from its stream's leader
// and tries again those it could not read.
func (s *Supervisor) Rejoin() {
	s.fenced.Store(false)
	if !s.beginServe() {
		return
	}
	go func() {
		defer s.watching.Done()
		pending := s.own()
		for wait := 100 * time.Millisecond; len(pending) > 0 && !s.fenced.Load(); wait = min(2*wait, 2*time.Second) {
			pending = slices.DeleteFunc(pending, s.rejoinAgent)
			if len(pending) == 0 {
				return
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// rejoinAgent settles agent a after fencing; false when its record could
// not be read (it stays stopped meanwhile, rather than risk a second
// copy).
func (s *Supervisor) rejoinAgent(a *agent) bool {
	ctx, cancel := context.WithTimeout(s.ctx, oxios.BackboneTimeout)
	r, rev, err := s.leaderGet(ctx, a.id)
	cancel()
	switch {
	case errors.Is(err, errNoRecord):
	case err != nil:
		s.log.Debug("after fencing, an agent's record could not be read from its stream's leader yet", "agent", a.id, "err", err)
		return false
	case rev > a.seen.Load() && r.Node != s.o.Node:
		s.lose(a, &r, rev, 0)
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fence = false
	if a.halted && !a.lost && !s.fenced.Load() && s.begin() {
		a.halted, a.started = false, true
		s.o.Scheduler.Acquire(a.id, a.rec.Kind == KindLLM)
		go s.run(a, start{reason: "lease renewed", recovered: true})
	}
	return true
}

// errNoRecord is a record not in the bucket (deleted).
var errNoRecord = errors.New("no such record")

// leaderGet reads agent id's record from the leader of the agents
// stream: a direct get may be answered by this node's own replica, which
// lags after a pause or a partition, and would tell a node that an agent
// taken over meanwhile is still its own.
func (s *Supervisor) leaderGet(ctx context.Context, id string) (Record, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + Bucket + "." + id})
	msg, err := s.o.JS.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+Bucket, req)
	if err != nil {
		return Record{}, 0, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return Record{}, 0, err
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return Record{}, 0, errNoRecord
		}
		return Record{}, 0, fmt.Errorf("read agent %s: %s", id, resp.Error.Description)
	}
	var r Record
	if err := json.Unmarshal(resp.Message.Data, &r); err != nil {
		return Record{}, 0, err
	}
	return r, resp.Message.Seq, nil
}

// own lists this node's agents.
func (s *Supervisor) own() []*agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*agent, 0, len(s.agents))
	for _, a := range s.agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *agent) int { return strings.Compare(a.id, b.id) })
	return out
}

// drain moves this node's agents to the others while it is drained.
func (s *Supervisor) drain() {
	defer s.watching.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	failing := map[string]string{}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.o.Drained == nil || !s.o.Drained() || s.fenced.Load() {
			continue
		}
		for _, a := range s.own() {
			if s.ctx.Err() != nil || !s.o.Drained() {
				break
			}
			err := s.move(a)
			switch {
			case err == nil:
				delete(failing, a.id)
			case failing[a.id] != err.Error(): // said once, not every tick
				failing[a.id] = err.Error()
				s.log.Warn("drain: an agent could not be moved; trying again", "agent", a.id, "err", err)
			}
		}
	}
}

// move hands agent a, if it has not ended, to the node placement chooses
// among the others, which starts it (and says so) before this node stops
// its run here, within the agent's stop timeout.
func (s *Supervisor) move(a *agent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lost || a.rec.State.Terminal() || a.endPending {
		return nil
	}
	target, why, err := s.place(a.rec.Spec, s.o.Node, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, moveTimeout)
	defer cancel()
	rp, err := s.forward(ctx, target, request{Op: "adopt", ID: a.id, Rev: a.rev, From: s.o.Node,
		Placed: fmt.Sprintf("moved from %s (drained); %s", s.o.Node, why)}, moveTimeout)
	if err != nil {
		return err
	}
	a.lost, a.lostGrace = true, dur(a.rec.Spec.StopTimeout)
	if rp.Record != nil {
		s.remote.setIfAbsent(a.id, rp.Record)
	}
	s.log.Info("drain: moved an agent", "agent", a.id, "to", target)
	s.letGo(a)
	return nil
}

// adopt takes over an agent a drained node hands over (at rq.Rev), starts
// it, and answers once it runs (or a moment has passed), so that the
// drained node stops its copy only then.
func (s *Supervisor) adopt(ctx context.Context, rq request) (Record, error) {
	if _, err := s.get(rq.ID); err == nil {
		return Record{}, fmt.Errorf("agent %s is node %s's already: %w", rq.ID, s.o.Node, ErrConflict)
	}
	if s.fenced.Load() {
		return Record{}, fmt.Errorf("node %s cannot renew its lease: %w", s.o.Node, oxios.ErrUnreachable)
	}
	e, err := s.kv.Get(ctx, rq.ID)
	if err != nil {
		return Record{}, fmt.Errorf("read agent %s: %w", rq.ID, err)
	}
	var r Record
	if json.Unmarshal(e.Value(), &r) != nil || e.Revision() != rq.Rev || r.Node != rq.From {
		return Record{}, fmt.Errorf("agent %s changed while node %s handed it over; it tries again: %w", rq.ID, rq.From, ErrConflict)
	}
	a, err := s.takeover(r, rq.Rev, "moved from node "+rq.From+" (drained)", rq.Placed, false)
	if err != nil {
		return Record{}, err
	}
	for wait := time.NewTimer(10 * time.Second); ; {
		if st := a.snap.Load().State; st != Queued && st != Starting {
			wait.Stop()
			break
		}
		select {
		case <-wait.C:
			return *a.snap.Load(), nil
		case <-ctx.Done():
			wait.Stop()
			return *a.snap.Load(), nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return *a.snap.Load(), nil
}
