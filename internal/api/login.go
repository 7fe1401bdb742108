package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/security"
)

// SessionCookie is the dashboard's session cookie.
const SessionCookie = "oxios_session"

// Failed authentication is limited per client address: after
// maxFailures in failWindow, every attempt from it gets 429 until the
// window ends — a right guess included, so guessing gains nothing.
const (
	maxFailures = 10
	failWindow  = time.Minute
)

type failures struct {
	mu  sync.Mutex
	by  map[string]*failCount
	now func() time.Time
}

type failCount struct {
	n     int
	start time.Time
}

func newFailures() *failures { return &failures{by: map[string]*failCount{}, now: time.Now} }

// clientIP is the client a request counts against: its address, with all
// of loopback one client (127.3.x.y is not another machine) and an IPv6
// address by its /64 (one host has them all).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.IsLoopback():
		return "loopback"
	case ip.To4() == nil:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// blocked returns how long ip must wait, or 0.
func (f *failures) blocked(ip string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.by[ip]
	if !ok {
		return 0
	}
	left := failWindow - f.now().Sub(c.start)
	if left <= 0 {
		delete(f.by, ip)
		return 0
	}
	if c.n >= maxFailures {
		return left
	}
	return 0
}

func (f *failures) fail(ip string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if len(f.by) > 100000 { // bounded memory under a spray of addresses
		for k, c := range f.by {
			if now.Sub(c.start) >= failWindow {
				delete(f.by, k)
			}
		}
	}
	c, ok := f.by[ip]
	if !ok || now.Sub(c.start) >= failWindow {
		c = &failCount{start: now}
		f.by[ip] = c
	}
	c.n++
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed authentications from this address; retry in %ds", int(wait.Seconds())+1), "")
}

// authFailed answers a failed authentication: counted, logged, audited.
func (s *Server) authFailed(w http.ResponseWriter, r *http.Request, msg string) {
	s.fails.fail(clientIP(r))
	s.Logger.Warn("authentication failed", "remote", r.RemoteAddr, "path", clip(r.URL.Path, maxAuditedResource))
	s.auditAuthFailure(r)
	w.Header().Set("WWW-Authenticate", `Bearer realm="oxios", error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, msg, "")
}

// safeMethod reports a request that changes nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether a cookie-authenticated request that changes
// state comes from the daemon's own pages.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

type loginRequest struct {
	Token string `json:"token"`
}

// login exchanges a token for a session cookie (HttpOnly, SameSite=Strict,
// Secure under TLS).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var req loginRequest
	if !decodeJSON(w, r, 4<<10, &req) {
		return
	}
	if req.Token == "" {
		writeError(w, http.StatusBadRequest, "token: required", "token")
		return
	}
	p, ok := s.Authenticate(req.Token)
	if !ok {
		if wait := s.fails.blocked(clientIP(r)); wait > 0 {
			tooMany(w, wait)
			return
		}
		s.authFailed(w, r, "invalid token")
		return
	}
	trustConn(r)
	ctx, cancel := context.WithTimeout(r.Context(), oxios.BackboneTimeout)
	defer cancel()
	id, exp, err := svc.Sessions.Open(ctx, p)
	if err != nil {
		s.fail(w, r, fmt.Errorf("open a session: %w", err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", Expires: exp, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	s.audit(r, audit.Entry{Action: "auth.login", Resource: "session"})
	writeJSON(w, http.StatusOK, map[string]any{"name": p.Name, "role": p.Role, "expires_at": exp})
}

// logout ends the session of the request's cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		svc.Sessions.Close(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
}

// sessionPrincipal authenticates a request by its session cookie. It
// returns security.ErrUnavailable while sessions cannot be checked (the
// daemon is starting): the browser should retry, not log in again.
func (s *Server) sessionPrincipal(r *http.Request) (security.Principal, bool, bool, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return security.Principal{}, false, false, nil
	}
	svc := s.services.Load()
	if svc == nil || svc.Sessions == nil {
		return security.Principal{}, true, false, security.ErrUnavailable
	}
	p, ok, err := svc.Sessions.Lookup(r.Context(), c.Value)
	return p, true, ok, err
}
