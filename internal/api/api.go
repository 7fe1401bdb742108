// Package api is oxios's HTTP surface: health and readiness probes, the
// authenticated REST API under /api/v1 with its JSON error envelope, and the
// dashboard's static files.
package api

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/web"
)

// The answers of the daemon's routes, defined in package oxios.
type (
	PartStatus = oxios.PartStatus
	Readiness  = oxios.Readiness
	System     = oxios.System
)

// Options are what the HTTP layer needs from the rest of the daemon.
type Options struct {
	Logger *slog.Logger
	// Authenticate returns who presents a bearer token, if it is valid.
	Authenticate func(token string) (security.Principal, bool)
	// Readiness reports the daemon's parts and whether all are ready.
	Readiness func() Readiness
	// System describes the running daemon.
	System func() System
	// Heartbeat is the interval of SSE heartbeat comments (default 15s).
	Heartbeat time.Duration
	// Reload reads the config file again and applies what it can live.
	Reload func(ctx context.Context) (ReloadResult, error)
	// Backup writes an online backup (a tar.gz) to w.
	Backup func(ctx context.Context, w io.Writer) error
}

// ReloadResult says what a reload changed.
type ReloadResult = oxios.ReloadResult

// Services are the parts the API serves once they have booted.
type Services struct {
	State     *store.Store
	Bus       *bus.Bus
	Agents    *supervisor.Supervisor
	Audit     *audit.Log
	Tokens    *security.Tokens
	Sessions  *security.Sessions
	Approvals *approval.Manager
	Budgets   *budget.Service
	Cron      *cron.Service
	Nodes     *cluster.Members
}

// Server is the daemon's HTTP handler. It answers probes from the start;
// the routes that need the backbone answer 503 until Attach.
type Server struct {
	Options
	handler  http.Handler
	services atomic.Pointer[Services]
	// stopping ends long-lived responses (event streams) at shutdown.
	stopping chan struct{}
	stopOnce sync.Once
	fails    *failures
	links    *loginLinks
	// guard caps the connections not yet authenticated; authFails
	// coalesces the audit entries of failed authentications.
	guard     *connGuard
	authFails *authFailures
}

// New returns the daemon's HTTP handler.
func New(o Options) *Server {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	s := &Server{Options: o, stopping: make(chan struct{}), fails: newFailures(), links: newLoginLinks(),
		guard: &connGuard{pending: list.New()}, authFails: &authFailures{by: map[string]*authFailWindow{}}}
	v1 := http.NewServeMux()
	for _, rt := range s.routes() {
		v1.HandleFunc(rt.pattern, instrument(rt.pattern, s.allow(rt.role, rt.handler)))
	}

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.healthz)
	root.HandleFunc("GET /readyz", s.readyz)
	root.HandleFunc("POST /api/v1/login", s.login)
	root.HandleFunc("GET /login", s.loginLinkPage)
	root.HandleFunc("POST /login", s.loginLink)
	root.Handle("/api/", s.authenticated(jsonMux(v1)))
	// Prometheus scrapes with a token too (authorization.credentials_file).
	root.Handle("GET /metrics", s.authenticated(instrument("GET /metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{ErrorLog: nil}).ServeHTTP)))
	root.Handle("/", web.Handler())
	s.handler = s.recoverer(readDeadline(root))
	return s
}

// route is one API route and the least role that may use it.
type route struct {
	pattern string
	role    security.Role
	handler http.HandlerFunc
}

// routes is the one table of every API route and its minimum role:
// viewers read, operators act on agents, state, approvals and cron, admins
// manage tokens and budgets and read the audit trail.
func (s *Server) routes() []route {
	v, o, a := security.Viewer, security.Operator, security.Admin
	return []route{
		{"GET /api/v1/system", v, s.system},
		{"GET /api/v1/overview", v, s.overview},
		{"GET /api/v1/whoami", v, s.whoami},
		{"POST /api/v1/reload", a, s.reload},
		{"GET /api/v1/backup", a, s.backup},
		{"POST /api/v1/login-links", v, s.loginLinkCreate},
		{"GET /api/v1/state/{ns}", v, s.stateList},
		{"GET /api/v1/state/{ns}/{key...}", v, s.stateGet},
		{"PUT /api/v1/state/{ns}/{key...}", o, s.statePut},
		{"DELETE /api/v1/state/{ns}/{key...}", o, s.stateDelete},
		{"GET /api/v1/events", v, s.eventStream},
		{"POST /api/v1/events", o, s.eventPublish},
		{"POST /api/v1/agents", o, s.agentSpawn},
		{"GET /api/v1/agents", v, s.agentList},
		{"GET /api/v1/agents/{id}", v, s.agentGet},
		{"DELETE /api/v1/agents/{id}", o, s.agentDelete},
		{"POST /api/v1/agents/{id}/wait", v, s.agentWait},
		{"POST /api/v1/agents/{id}/kill", o, s.agentKill},
		{"POST /api/v1/agents/{id}/restart", o, s.agentRestart},
		{"GET /api/v1/agents/{id}/logs", v, s.agentLogs},
		{"GET /api/v1/agents/{id}/output", v, s.agentOutput},
		{"GET /api/v1/scheduler", v, s.schedulerGet},
		{"GET /api/v1/nodes", v, s.nodeList},
		// Draining moves everyone's agents: cluster maintenance, for admins.
		{"POST /api/v1/nodes/{name}/drain", a, s.nodeDrain},
		{"POST /api/v1/nodes/{name}/undrain", a, s.nodeUndrain},
		{"GET /api/v1/audit", a, s.auditList},
		{"GET /api/v1/audit/verify", a, s.auditVerify},
		{"POST /api/v1/tokens", a, s.tokenCreate},
		{"GET /api/v1/tokens", a, s.tokenList},
		{"DELETE /api/v1/tokens/{id}", a, s.tokenRevoke},
		{"POST /api/v1/logout", v, s.logout},
		{"GET /api/v1/approvals", v, s.approvalList},
		{"GET /api/v1/approvals/{id}", v, s.approvalGet},
		{"POST /api/v1/approvals/{id}/approve", o, s.approvalApprove},
		{"POST /api/v1/approvals/{id}/reject", o, s.approvalReject},
		// Budgets cap what operators' agents spend, so only admins set them.
		{"GET /api/v1/budgets", v, s.budgetList},
		{"GET /api/v1/budgets/{name}", v, s.budgetGet},
		{"PUT /api/v1/budgets/{name}", a, s.budgetSet},
		{"DELETE /api/v1/budgets/{name}", a, s.budgetDelete},
		{"POST /api/v1/budgets/{name}/reset", a, s.budgetReset},
		{"GET /api/v1/cron", v, s.cronList},
		{"POST /api/v1/cron", o, s.cronCreate},
		{"GET /api/v1/cron/{name}", v, s.cronGet},
		{"DELETE /api/v1/cron/{name}", o, s.cronDelete},
		{"POST /api/v1/cron/{name}/enable", o, s.cronEnable},
		{"POST /api/v1/cron/{name}/disable", o, s.cronDisable},
		{"POST /api/v1/cron/{name}/trigger", o, s.cronTrigger},
	}
}

type principalKey struct{}

// viaSessionKey marks a request authenticated by a session cookie.
type viaSessionKey struct{}

// principal is who made the request (set by authenticated).
func principal(r *http.Request) security.Principal {
	p, _ := r.Context().Value(principalKey{}).(security.Principal)
	return p
}

// allow serves h only to principals with at least role.
func (s *Server) allow(role security.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		if p.Role < role {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s needs the %s role; token %q has %s", r.Method, r.URL.Path, role, p.Name, p.Role), "")
			return
		}
		h(w, r)
	}
}

// firstWrite sets the archive's headers at its first byte, so that an
// error before it can still be an error response.
type firstWrite struct {
	http.ResponseWriter
	started bool
}

func (w *firstWrite) Write(b []byte) (int, error) {
	if !w.started {
		w.started = true
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Content-Disposition", `attachment; filename="oxios-backup.tar.gz"`)
	}
	return w.ResponseWriter.Write(b)
}

// statusWriter remembers the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps streams (SSE) working through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts a route's requests by status and times them; streams
// (their latency is their lifetime) are counted, not timed.
func instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		t0 := time.Now()
		h(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		if w.Header().Get("Content-Type") != "text/event-stream" {
			metrics.HTTPLatency.WithLabelValues(route).Observe(time.Since(t0).Seconds())
		}
	}
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Attach makes the backbone-backed routes available.
func (s *Server) Attach(svc *Services) { s.services.Store(svc) }

// Stop ends long-lived responses, so a graceful HTTP shutdown does not
// wait for event streams that never end by themselves.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.stopAuthFailures()
	})
}

// svc returns the attached services, or answers 503 and returns nil.
func (s *Server) svc(w http.ResponseWriter) *Services {
	svc := s.services.Load()
	if svc == nil {
		writeError(w, http.StatusServiceUnavailable, "the daemon is still starting; retry in a moment", "")
	}
	return svc
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.Readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// reload applies the config file again; an invalid file is a 400 naming
// the key, and the running configuration stays.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r.URL.Query()) {
		return
	}
	if s.Reload == nil {
		writeError(w, http.StatusServiceUnavailable, "reload is not available", "")
		return
	}
	res, err := s.Reload(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// backup streams an online backup. An error after the first bytes cannot
// change the status any more: the archive then has no manifest, which the
// CLI's check of the download reports.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r.URL.Query()) {
		return
	}
	if s.Backup == nil {
		writeError(w, http.StatusServiceUnavailable, "backup is not available", "")
		return
	}
	// A backup holds the secrets, the audit key among them (with it,
	// entries could be forged): only the admin token of the daemon's own
	// secrets/admin.token may take one, not tokens made with a role.
	if via, _ := r.Context().Value(viaSessionKey{}).(bool); via || principal(r).TokenID != "" {
		writeError(w, http.StatusForbidden, "a backup holds the daemon's secrets: take it with the admin token of secrets/admin.token (oxios backup on the daemon's machine)", "")
		return
	}
	s.audit(r, audit.Entry{Action: "backup.requested", Resource: "backup"})
	keepOpen(w)
	bw := &firstWrite{ResponseWriter: w}
	if err := s.Backup(r.Context(), bw); err != nil {
		if !bw.started {
			s.fail(w, r, fmt.Errorf("backup: %w", err))
			return
		}
		s.Logger.Error("backup", "err", err)
		panic(http.ErrAbortHandler) // the client sees a broken download, not a short one
	}
}

// whoami says who the request's token or session stands for.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	writeJSON(w, http.StatusOK, map[string]any{"name": p.Name, "role": p.Role})
}

func (s *Server) system(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.System())
}

// authenticated requires "Authorization: Bearer <token>" on every request.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		var p security.Principal
		if auth != "" {
			scheme, token, cut := strings.Cut(auth, " ")
			ok := false
			if cut && strings.EqualFold(scheme, "Bearer") {
				p, ok = s.Authenticate(strings.TrimSpace(token))
			}
			if !ok || p.Role < security.Viewer {
				// Only wrong guesses are limited: a right token always
				// passes, so a local agent spraying bad tokens at the API
				// cannot lock the operators on the same address out.
				if wait := s.fails.blocked(clientIP(r)); wait > 0 {
					tooMany(w, wait)
					return
				}
				s.authFailed(w, r, "invalid token")
				return
			}
			trustConn(r)
		} else if sp, present, ok, err := s.sessionPrincipal(r); present {
			if err != nil {
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusServiceUnavailable, "the daemon is starting; try again in a moment", "")
				return
			}
			if !ok {
				// An ended session is not a guess (its id is 256 random
				// bits): it is not counted or audited as a failure.
				writeError(w, http.StatusUnauthorized, "the session has ended; log in again", "")
				return
			}
			// A cookie is sent by the browser on its own: a request that
			// changes state must come from the daemon's own pages.
			if !safeMethod(r.Method) && !sameOrigin(r) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("cross-site request refused: Origin %q is not this daemon", r.Header.Get("Origin")), "Origin")
				return
			}
			p = sp
			trustConn(r)
			r = r.WithContext(context.WithValue(r.Context(), viaSessionKey{}, true))
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oxios"`)
			writeError(w, http.StatusUnauthorized, "missing token: send \"Authorization: Bearer <token>\" (the admin token is in $OXIOS_HOME/secrets/admin.token)", "")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// jsonMux serves mux, but answers unknown routes and wrong methods with
// the JSON error envelope instead of ServeMux's plain-text replies.
func jsonMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			rec := &statusRecorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			switch rec.status {
			case http.StatusMethodNotAllowed:
				w.Header().Set("Allow", rec.header.Get("Allow"))
				writeError(w, rec.status, fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow")), "")
			default:
				writeError(w, http.StatusNotFound, fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path), "")
			}
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusRecorder captures the status and headers of ServeMux's built-in
// not-found and method-not-allowed handlers, discarding their bodies.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

// recoverer turns a panic in a handler into a logged 500 with the JSON
// envelope, so one bad request never takes the daemon down.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				id := requestID()
				s.Logger.Error("panic in HTTP handler", "request_id", id, "method", r.Method, "path", clip(r.URL.Path, maxAuditedResource), "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal error; the daemon's log has it under request_id "+id, "")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
