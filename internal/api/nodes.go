package api

import (
	"net/http"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/oxios"
)

// nodeList answers every node of the cluster (one, without a cluster),
// with its state as this node sees it.
func (s *Server) nodeList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, oxios.NodeList{Items: svc.Nodes.List(), Self: svc.Nodes.Self()})
}

func (s *Server) nodeDrain(w http.ResponseWriter, r *http.Request)   { s.nodeSetDrained(w, r, true) }
func (s *Server) nodeUndrain(w http.ResponseWriter, r *http.Request) { s.nodeSetDrained(w, r, false) }

// nodeSetDrained drains a node (no agent is placed on it, and it moves its
// agents to the others) or undrains it.
func (s *Server) nodeSetDrained(w http.ResponseWriter, r *http.Request, on bool) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	n, err := svc.Nodes.SetDrained(r.Context(), name, on)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	action := "node.drained"
	if !on {
		action = "node.undrained"
	}
	s.audit(r, audit.Entry{Action: action, Resource: "node:" + name})
	writeJSON(w, http.StatusOK, n)
}
