package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/oxios/oxios/internal/approval"
)

func (s *Server) approvalList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "state", "agent") {
		return
	}
	st := approval.State(q.Get("state"))
	switch st {
	case "", approval.Pending, approval.Approved, approval.Rejected:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state: must be pending, approved or rejected (got %q)", st), "state")
		return
	}
	items := svc.Approvals.List(st, q.Get("agent"))
	if items == nil {
		items = []approval.Approval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) approvalGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	a, err := svc.Approvals.Get(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

type decision struct {
	Reason string `json:"reason"`
}

func (s *Server) approvalApprove(w http.ResponseWriter, r *http.Request) { s.decide(w, r, true) }
func (s *Server) approvalReject(w http.ResponseWriter, r *http.Request)  { s.decide(w, r, false) }

// decide approves or rejects a pending approval; the body ({"reason"}) is
// optional.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var d decision
	if r.ContentLength != 0 && r.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1))
		if len(body) > 0 {
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			if !decodeJSON(w, r, 8<<10, &d) {
				return
			}
		}
	}
	a, err := svc.Approvals.Decide(r.Context(), r.PathValue("id"), approve, principal(r).Name, d.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}
