package api

import (
	"net/http"
	"time"

	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/supervisor"
)

// Overview is the body of GET /api/v1/overview: what the dashboard's first
// page shows, of the whole cluster or (?node=) of one node.
type Overview struct {
	Agents supervisor.Stats `json:"agents"`
	// Nodes are the cluster's nodes; Node is the one asked for ("": all).
	Nodes []oxios.Node `json:"nodes"`
	Node  string       `json:"node"`
	// Running are the running agents, newest first (at most 20).
	Running []supervisor.Record `json:"running"`
	// EventsPerMinute counts the events this node published in each of the
	// last 60 minutes, oldest first, the current minute last.
	EventsPerMinute []int64 `json:"events_per_minute"`
	// Today is since local midnight; Usage in Agents is the usage of the
	// runs started since then.
	Today     time.Time `json:"today"`
	Readiness Readiness `json:"readiness"`
	Scheduler any       `json:"scheduler"`
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query(), "node") {
		return
	}
	node := r.URL.Query().Get("node")
	now := time.Now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	running, _ := svc.Agents.List(supervisor.Filter{States: []supervisor.State{supervisor.Running, supervisor.WaitingApproval}, Node: node}, 20, "")
	for i := range running {
		running[i].ToolCalls = nil // the list is a summary
	}
	if running == nil {
		running = []supervisor.Record{}
	}
	o := Overview{Agents: svc.Agents.Stats(today, node), Nodes: svc.Nodes.List(), Node: node, Running: running, EventsPerMinute: svc.Bus.PerMinute(60),
		Today: today, Scheduler: svc.Agents.Scheduler()}
	if s.Readiness != nil {
		o.Readiness = s.Readiness()
	}
	writeJSON(w, http.StatusOK, o)
}
