package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/security"
)

type tokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// ExpiresAt (RFC 3339) or ExpiresIn (a duration); neither: no expiry.
	ExpiresAt *time.Time `json:"expires_at"`
	ExpiresIn string     `json:"expires_in"`
}

// TokenCreated is the answer of POST /api/v1/tokens.
type TokenCreated = oxios.TokenCreated

func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var req tokenRequest
	if !decodeJSON(w, r, 64<<10, &req) {
		return
	}
	role, err := security.ParseRole(req.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, "role: "+err.Error(), "role")
		return
	}
	exp := req.ExpiresAt
	if req.ExpiresIn != "" {
		if exp != nil {
			writeError(w, http.StatusBadRequest, "expires_in: give expires_at or expires_in, not both", "expires_in")
			return
		}
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("expires_in: must be a positive duration such as \"720h\" (got %q)", req.ExpiresIn), "expires_in")
			return
		}
		t := time.Now().Add(d).UTC()
		exp = &t
	}
	secret, tok, err := svc.Tokens.Create(r.Context(), req.Name, role, exp)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "token.create", Resource: "token/" + tok.ID, Detail: map[string]any{"name": tok.Name, "role": tok.Role.String()}})
	writeJSON(w, http.StatusCreated, TokenCreated{Token: tok, Secret: secret})
}

func (s *Server) tokenList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": svc.Tokens.List()})
}

func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	tok, err := svc.Tokens.Revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "token.revoke", Resource: "token/" + tok.ID, Detail: map[string]any{"name": tok.Name}})
	w.WriteHeader(http.StatusNoContent)
}
