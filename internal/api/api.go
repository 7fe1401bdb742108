// Package api is oxios's HTTP surface: health and readiness probes, the
// authenticated REST API under /api/v1 with its JSON error envelope, and the
// dashboard's static files.
package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/version"
	"github.com/oxios/oxios/internal/web"
)

// PartStatus is the readiness of one part of the daemon.
type PartStatus struct {
	Name  string `json:"name"`
	State string `json:"state"` // starting, ready, stopping, stopped, failed
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready    bool         `json:"ready"`
	PID      int          `json:"pid"`
	Parts    []PartStatus `json:"parts"`
	NotReady []string     `json:"not_ready,omitempty"`
}

// System is the body of GET /api/v1/system.
type System struct {
	version.Info
	Node          string    `json:"node"`
	PID           int       `json:"pid"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Listen        string    `json:"listen"`
	Home          string    `json:"home"`
}

// Options are what the HTTP layer needs from the rest of the daemon.
type Options struct {
	Logger *slog.Logger
	// Authenticate reports whether a bearer token is valid.
	Authenticate func(token string) bool
	// Readiness reports the daemon's parts and whether all are ready.
	Readiness func() Readiness
	// System describes the running daemon.
	System func() System
}

// Handler returns the daemon's whole HTTP handler.
func Handler(o Options) http.Handler {
	s := &server{Options: o}
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /api/v1/system", s.system)

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.healthz)
	root.HandleFunc("GET /readyz", s.readyz)
	root.Handle("/api/", s.authenticated(jsonMux(v1)))
	root.Handle("/", web.Handler())
	return s.recoverer(root)
}

type server struct {
	Options
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.Readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

func (s *server) system(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.System())
}

// authenticated requires "Authorization: Bearer <token>" on every request.
func (s *server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		if auth == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oxios"`)
			writeError(w, http.StatusUnauthorized, "missing token: send \"Authorization: Bearer <token>\" (the admin token is in $OXIOS_HOME/secrets/admin.token)", "")
			return
		}
		if !ok || !strings.EqualFold(scheme, "Bearer") || !s.Authenticate(strings.TrimSpace(token)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oxios", error="invalid_token"`)
			s.Logger.Warn("authentication failed", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, "invalid token", "")
			return
		}
		next.ServeHTTP(w, r)
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
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal error; see the daemon log", "")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
