package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/audit"
)

// audit appends an entry to the audit trail. The action it records has
// happened (or been refused), so a failure is logged, not returned.
func (s *Server) audit(r *http.Request, e audit.Entry) {
	if e.Actor == "" {
		e.Actor = principal(r).Name
	}
	s.auditEntry(context.WithoutCancel(r.Context()), e)
}

// auditEntry appends e, logging a failure.
func (s *Server) auditEntry(ctx context.Context, e audit.Entry) {
	svc := s.services.Load()
	if svc == nil || svc.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, oxios.BackboneTimeout)
	defer cancel()
	if _, err := svc.Audit.Append(ctx, e); err != nil {
		s.Logger.Error("audit", "action", e.Action, "err", err)
	}
}

type auditList struct {
	Items []audit.Entry `json:"items"`
	// NextAfter continues the list (?after=); 0 when there is no more.
	NextAfter uint64 `json:"next_after"`
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "actor", "action", "since", "after", "limit", "tail") {
		return
	}
	f := audit.Filter{Actor: q.Get("actor"), Action: q.Get("action")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			if d, derr := time.ParseDuration(v); derr == nil && d > 0 {
				t, err = time.Now().Add(-d), nil
			}
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: must be an RFC 3339 time such as 2026-11-25T10:00:00Z or a duration such as 24h (got "+strconv.Quote(v)+")", "since")
			return
		}
		f.Since = t
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after: must be an entry sequence number (got "+strconv.Quote(v)+")", "after")
			return
		}
		f.After = n
	}
	limit, ok := intParam(w, q.Get("limit"), "limit", 100, 1, 1000)
	if !ok {
		return
	}
	if v := q.Get("tail"); v != "" {
		// The newest entries: start that many before the end.
		n, ok := intParam(w, v, "tail", 100, 1, 1000)
		if !ok {
			return
		}
		last, err := svc.Audit.LastSeq(r.Context())
		if err != nil {
			s.fail(w, r, fmt.Errorf("read the audit trail: %w", err))
			return
		}
		f.After = last - min(last, uint64(n))
	}
	f.Limit = limit
	items, err := svc.Audit.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, fmt.Errorf("read the audit trail: %w", err))
		return
	}
	out := auditList{Items: items}
	if out.Items == nil {
		out.Items = []audit.Entry{}
	}
	if len(items) == limit {
		out.NextAfter = items[len(items)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	v, err := svc.Audit.Verify(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("read the audit trail: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}
