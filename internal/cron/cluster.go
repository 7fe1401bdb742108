package cron

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/oxios"
)

// Cron jobs are the cluster's: every node lists every node's jobs, from
// an index of the cron bucket kept by a watch, and deletes, enables or
// disables another node's job by asking that node, over NATS
// request/reply on "oxios.node.NAME.cron". Every node schedules every
// job; each scheduled time is fired by the one node that claims it
// (service.go), so a job fires once per time in the whole cluster, and
// on as long as one node is up.

// otherJob is another node's job, as stored.
type otherJob struct {
	def   *Def
	state *jobState
}

// forwardTimeout bounds an operation asked of another node.
const forwardTimeout = 10 * time.Second

// request is an operation on another node's job.
type request struct {
	Op   string `json:"op"` // delete, enable, trigger
	Name string `json:"name"`
	On   bool   `json:"on,omitempty"`
}

type reply struct {
	Status Status           `json:"status"`
	Fired  Fired            `json:"fired"`
	Err    *oxios.WireError `json:"error,omitempty"`
}

// joinCluster keeps the index of the other nodes' jobs and answers their
// requests, until ctx ends; the index holds the jobs stored at its start
// when it returns.
func (s *Service) joinCluster(ctx, run context.Context) error {
	w, err := s.kv.WatchFiltered(ctx, []string{"job.>", "run.>"})
	if err != nil {
		return fmt.Errorf("watch %s: %w", Bucket, err)
	}
	ready := make(chan struct{})
	s.watching.Add(1)
	go s.watchOthers(run, w, ready)
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.serving, err = s.o.JS.Conn().Subscribe(cluster.Subject(s.o.Node, "cron"), s.serve)
	return err
}

func (s *Service) watchOthers(ctx context.Context, w jetstream.KeyWatcher, ready chan struct{}) {
	defer s.watching.Done()
	cluster.Follow(ctx, w, ready, s.other)
}

// other takes one change of another node's job or state.
func (s *Service) other(e jetstream.KeyValueEntry) {
	parts := strings.SplitN(e.Key(), ".", 3)
	if len(parts) != 3 || parts[1] == s.o.Node {
		return
	}
	kind, node, name := parts[0], parts[1], parts[2]
	s.mu.Lock()
	indexed := s.indexed
	defer func() {
		if kind == "job" && indexed {
			s.reschedule(name)
		}
	}()
	defer s.mu.Unlock()
	jobs := s.others[node]
	if jobs == nil {
		jobs = map[string]*otherJob{}
		s.others[node] = jobs
	}
	j := jobs[name]
	if j == nil {
		j = &otherJob{}
		jobs[name] = j
	}
	put := e.Operation() == jetstream.KeyValuePut
	switch kind {
	case "job":
		j.def = nil
		var d Def
		if put && json.Unmarshal(e.Value(), &d) == nil {
			j.def = &d
		}
	case "run":
		j.state = nil
		var st jobState
		if put && json.Unmarshal(e.Value(), &st) == nil {
			j.state = &st
		}
	}
	if j.def == nil && j.state == nil {
		delete(jobs, name)
	}
}

// otherOwner is the node, other than this one, that has job name.
func (s *Service) otherOwner(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nodes := make([]string, 0, len(s.others))
	for node, jobs := range s.others {
		if j := jobs[name]; j != nil && j.def != nil {
			nodes = append(nodes, node)
		}
	}
	if len(nodes) == 0 {
		return "", false
	}
	sort.Strings(nodes)
	return nodes[0], true
}

// elsewhere is the node that has job name, when it is not this one.
func (s *Service) elsewhere(name string) (string, bool) {
	if _, err := s.lookup(name); err == nil {
		return "", false
	}
	return s.otherOwner(name)
}

// forward asks node to do rq on its job.
func (s *Service) forward(ctx context.Context, node string, rq request) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	var rp reply
	who := fmt.Sprintf("cron job %s is node %s's", rq.Name, node)
	if err := cluster.Ask(ctx, s.o.JS.Conn(), node, "cron", rq, &rp, who); err != nil {
		return reply{}, err
	}
	if rp.Err != nil {
		return rp, rp.Err.Err(node)
	}
	return rp, nil
}

// serve answers another node's request about one of this node's jobs, on
// a goroutine of its own that Close waits for.
func (s *Service) serve(m *nats.Msg) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.watching.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.watching.Done()
		var rq request
		var rp reply
		ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
		defer cancel()
		var err error
		if err = json.Unmarshal(m.Data, &rq); err == nil {
			if _, err = s.lookup(rq.Name); err == nil {
				switch rq.Op {
				case "delete":
					err = s.Delete(ctx, rq.Name)
				case "enable":
					rp.Status, err = s.SetEnabled(ctx, rq.Name, rq.On)
				case "trigger":
					rp.Fired, err = s.Trigger(ctx, rq.Name)
				default:
					err = &oxios.InvalidError{Field: "op", Msg: fmt.Sprintf("unknown forwarded operation %q", rq.Op)}
				}
			}
		}
		if err != nil {
			rp.Err = oxios.ToWire(err)
		}
		b, _ := json.Marshal(rp)
		m.Respond(b)
	}()
}
