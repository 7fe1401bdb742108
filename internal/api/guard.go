package api

import (
	"container/list"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/metrics"
)

// What a client without a token can hold of the daemon is bounded: the
// connections not yet authenticated, the time a request may take to
// arrive, and what its failures write to the audit trail.

// MaxUnauthenticated is how many connections may be open at once that
// have not presented a valid token or session. Past it, the oldest of
// them is closed to make room: a client holding connections open cannot
// keep the owner's CLI out, whose requests authenticate at once.
var MaxUnauthenticated = 256

// connGuard tracks the connections that have not authenticated yet.
type connGuard struct {
	mu      sync.Mutex
	pending *list.List // of *guardedConn, oldest first
}

type guardedConn struct {
	net.Conn
	g    *connGuard
	elem *list.Element // guarded by g.mu; nil once authenticated or closed
}

type guardedListener struct {
	net.Listener
	g *connGuard
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardedConn{Conn: c, g: l.g}
	var evict *guardedConn
	l.g.mu.Lock()
	gc.elem = l.g.pending.PushBack(gc)
	if l.g.pending.Len() > MaxUnauthenticated {
		evict = l.g.pending.Remove(l.g.pending.Front()).(*guardedConn)
		evict.elem = nil
	}
	l.g.mu.Unlock()
	if evict != nil {
		metrics.HTTPEvicted.Inc()
		evict.Conn.Close()
	}
	return gc, nil
}

// trusted takes c off the pending list: it has authenticated.
func (c *guardedConn) trusted() {
	c.g.mu.Lock()
	if c.elem != nil {
		c.g.pending.Remove(c.elem)
		c.elem = nil
	}
	c.g.mu.Unlock()
}

func (c *guardedConn) Close() error {
	c.trusted()
	return c.Conn.Close()
}

type connKey struct{}

// Listen wraps the daemon's listener so that connections which have not
// authenticated are capped at MaxUnauthenticated. Use it with ConnContext.
func (s *Server) Listen(ln net.Listener) net.Listener {
	return guardedListener{Listener: ln, g: s.guard}
}

// ConnContext is the http.Server's ConnContext for a listener from Listen.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*guardedConn); ok {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

// trustConn marks the connection of r as authenticated.
func trustConn(r *http.Request) {
	if gc, ok := r.Context().Value(connKey{}).(*guardedConn); ok {
		gc.trusted()
	}
}

// readDeadline bounds how long a request's body may take to arrive, on
// every route: an unfinished body (a half-sent one, or chunks that never
// end) would otherwise hold its connection, also where the answer does
// not read it (a 401) and the server drains it. Once the body has been
// read whole the deadline is lifted, so that long answers (a wait, an
// event stream) are not cut by it.
func readDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
			r.Body = &liftAtEOF{ReadCloser: r.Body, lift: func() { rc.SetReadDeadline(time.Time{}) }}
		}
		next.ServeHTTP(w, r)
	})
}

// liftAtEOF calls lift once its body has been read to the end.
type liftAtEOF struct {
	io.ReadCloser
	lift   func()
	lifted bool
}

func (b *liftAtEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.lift()
	}
	return n, err
}

// keepOpen lifts the read deadline for an answer that streams (events,
// log follows, a backup, a large output) without reading the body.
func keepOpen(w http.ResponseWriter) {
	http.NewResponseController(w).SetReadDeadline(time.Time{})
}

// maxAuditedResource bounds the method and path a failed authentication
// records (900 KB paths grew the trail by 27.7 MB in 2 s).
const maxAuditedResource = 256

// authFailures coalesces the audit entries of failed authentications: the
// first from a client in failWindow is written at once, the rest are
// counted and written as one entry with the count when the window ends.
type authFailures struct {
	mu      sync.Mutex
	by      map[string]*authFailWindow
	stopped bool
}

type authFailWindow struct {
	first, last time.Time
	more        int    // failures after the first
	resource    string // the latest one's
	timer       *time.Timer
}

// maxFailClients bounds the clients tracked; past it, failures are
// written without coalescing (the failure limiter still applies).
const maxFailClients = 10000

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// auditAuthFailure audits a failed authentication of r.
func (s *Server) auditAuthFailure(r *http.Request) {
	key := clientIP(r)
	resource := clip(r.Method+" "+r.URL.Path, maxAuditedResource)
	f := s.authFails
	now := time.Now()
	f.mu.Lock()
	w, ok := f.by[key]
	switch {
	case ok:
		w.more++
		w.last, w.resource = now, resource
		f.mu.Unlock()
		return
	case !f.stopped && len(f.by) < maxFailClients:
		w = &authFailWindow{first: now, last: now, resource: resource}
		f.by[key] = w
		w.timer = time.AfterFunc(failWindow, func() { s.flushAuthFailures(key) })
	}
	f.mu.Unlock()
	s.audit(r, audit.Entry{Actor: "remote:" + r.RemoteAddr, Action: "auth.failed", Resource: resource, Outcome: "denied"})
}

// flushAuthFailures writes the count of key's failures after its first,
// and ends its window.
func (s *Server) flushAuthFailures(key string) {
	f := s.authFails
	f.mu.Lock()
	w, ok := f.by[key]
	delete(f.by, key)
	f.mu.Unlock()
	if !ok || w.more == 0 {
		return
	}
	s.auditEntry(context.Background(), audit.Entry{Actor: "remote:" + key, Action: "auth.failed", Resource: w.resource, Outcome: "denied",
		Detail: map[string]any{"count": w.more, "from": w.first.UTC().Format(time.RFC3339Nano), "to": w.last.UTC().Format(time.RFC3339Nano)}})
}

// stopAuthFailures writes every pending count (at shutdown).
func (s *Server) stopAuthFailures() {
	f := s.authFails
	f.mu.Lock()
	f.stopped = true
	keys := make([]string, 0, len(f.by))
	for k, w := range f.by {
		w.timer.Stop()
		keys = append(keys, k)
	}
	f.mu.Unlock()
	for _, k := range keys {
		s.flushAuthFailures(k)
	}
}
