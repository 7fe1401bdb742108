package api

import (
	"net/http"

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
