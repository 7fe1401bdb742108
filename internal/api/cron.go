package api

import (
	"net/http"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/supervisor"
)

// cronBody is what POST /api/v1/cron takes.
type cronBody struct {
	Name     string          `json:"name"`
	Schedule string          `json:"schedule"`
	Zone     string          `json:"zone"`
	Overlap  string          `json:"overlap"`
	Missed   string          `json:"missed"`
	Enabled  *bool           `json:"enabled"`
	Spec     supervisor.Spec `json:"spec"`
}

func (s *Server) cronList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	items := svc.Cron.List()
	for i := range items {
		items[i].Spec = shownSpec(r, items[i].Spec)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) cronGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	j, err := svc.Cron.Get(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j.Spec = shownSpec(r, j.Spec)
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) cronCreate(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var b cronBody
	if !decodeJSON(w, r, maxSpecBody, &b) {
		return
	}
	d := cron.Def{Name: b.Name, Schedule: b.Schedule, Zone: b.Zone, Overlap: b.Overlap, Missed: b.Missed,
		Enabled: b.Enabled == nil || *b.Enabled, Spec: b.Spec}
	j, err := svc.Cron.Create(asCaller(r), d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "cron.created", Resource: "cron:" + j.Name,
		Detail: map[string]any{"schedule": j.Schedule, "zone": j.Zone, "kind": j.Spec.Kind}})
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) cronDelete(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	if err := svc.Cron.Delete(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "cron.deleted", Resource: "cron:" + name})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) cronEnable(w http.ResponseWriter, r *http.Request)  { s.cronSetEnabled(w, r, true) }
func (s *Server) cronDisable(w http.ResponseWriter, r *http.Request) { s.cronSetEnabled(w, r, false) }

func (s *Server) cronSetEnabled(w http.ResponseWriter, r *http.Request, on bool) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	j, err := svc.Cron.SetEnabled(r.Context(), name, on)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	action := "cron.disabled"
	if on {
		action = "cron.enabled"
	}
	s.audit(r, audit.Entry{Action: action, Resource: "cron:" + name})
	writeJSON(w, http.StatusOK, j)
}

// cronTrigger fires a job now and answers with the firing: the agent it
// spawned, or that it was skipped or queued by the overlap policy.
func (s *Server) cronTrigger(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	name := r.PathValue("name")
	run, err := svc.Cron.Trigger(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "cron.triggered", Resource: "cron:" + name, Detail: map[string]any{"action": run.Action, "agent_id": run.AgentID}})
	writeJSON(w, http.StatusOK, run)
}
