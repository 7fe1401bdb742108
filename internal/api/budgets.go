package api

import (
	"net/http"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/budget"
)

// budgetBody is what PUT /api/v1/budgets/{name} takes: the whole budget.
type budgetBody struct {
	Window  string  `json:"window"`
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
	Calls   int64   `json:"calls"`
}

func (s *Server) budgetList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": svc.Budgets.List()})
}

func (s *Server) budgetGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	st, err := svc.Budgets.Get(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) budgetSet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var b budgetBody
	if !decodeJSON(w, r, 8<<10, &b) {
		return
	}
	name := r.PathValue("name")
	st, err := svc.Budgets.Set(r.Context(), budget.Budget{Name: name, Window: b.Window,
		Limits: budget.Limits{Tokens: b.Tokens, CostUSD: b.CostUSD, Calls: b.Calls}})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "budget.set", Resource: "budget:" + name,
		Detail: map[string]any{"window": st.Window, "tokens": st.Tokens, "cost_usd": st.CostUSD, "calls": st.Calls}})
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) budgetReset(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	before, err := svc.Budgets.Get(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := svc.Budgets.Reset(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "budget.reset", Resource: "budget:" + name,
		Detail: map[string]any{"tokens": before.Used.Tokens, "cost_usd": before.Used.CostUSD, "calls": before.Used.Calls}})
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) budgetDelete(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	if err := svc.Budgets.Delete(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "budget.deleted", Resource: "budget:" + name})
	w.WriteHeader(http.StatusNoContent)
}
