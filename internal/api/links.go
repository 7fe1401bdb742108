package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/security"
)

// LinkTTL is how long a one-time login link works.
const LinkTTL = 2 * time.Minute

// loginLinks are one-time login links for the dashboard (oxios dashboard):
// a code good for one session of the principal that asked for it, used at
// most once and within LinkTTL. They live in memory: a link is opened on
// the daemon that made it, moments later.
type loginLinks struct {
	mu    sync.Mutex
	codes map[[32]byte]link
}

type link struct {
	p       security.Principal
	expires time.Time
}

func newLoginLinks() *loginLinks { return &loginLinks{codes: map[[32]byte]link{}} }

func (l *loginLinks) create(p security.Principal) (string, time.Time) {
	b := make([]byte, 32)
	rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	exp := time.Now().Add(LinkTTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.codes { // drop the expired ones
		if time.Now().After(v.expires) {
			delete(l.codes, k)
		}
	}
	l.codes[sha256.Sum256([]byte(code))] = link{p: p, expires: exp}
	return code, exp
}

// use consumes a code: it works once, before it expires.
func (l *loginLinks) use(code string) (security.Principal, bool) {
	if code == "" || len(code) > 100 {
		return security.Principal{}, false
	}
	k := sha256.Sum256([]byte(code))
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.codes[k]
	delete(l.codes, k)
	if !ok || time.Now().After(v.expires) {
		return security.Principal{}, false
	}
	return v.p, true
}

// loginLinkCreate makes a one-time login link for the caller.
func (s *Server) loginLinkCreate(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r.URL.Query()) {
		return
	}
	p := principal(r)
	code, exp := s.links.create(p)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.audit(r, audit.Entry{Action: "auth.link", Resource: "session"})
	writeJSON(w, http.StatusCreated, map[string]any{"url": scheme + "://" + r.Host + "/login?code=" + code, "expires_at": exp.UTC()})
}

var linkPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>oxios</title>
<style>:root{color-scheme:light dark;font-family:system-ui,sans-serif}body{max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body>
{{if .OK}}<p>Logged in. <a href="/">Open the dashboard</a>.</p>
<script>location.replace("/")</script>
{{else}}<h1>This login link does not work</h1>
<p>It has expired or was already used. Run <code>oxios dashboard</code> again for a new one, or log in with a token on <a href="/">the dashboard</a>.</p>
{{end}}</body></html>`))

// loginLink opens a session from a one-time code and sends the browser to
// the dashboard. The page (not a redirect) carries the new cookie, so the
// next request is a same-site one that sends it.
func (s *Server) loginLink(w http.ResponseWriter, r *http.Request) {
	svc := s.services.Load()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if wait := s.fails.blocked(clientIP(r)); wait > 0 {
		tooMany(w, wait)
		return
	}
	p, ok := s.links.use(r.URL.Query().Get("code"))
	if !ok || svc == nil || svc.Sessions == nil {
		if !ok {
			s.fails.fail(clientIP(r))
			s.audit(r, audit.Entry{Actor: "anonymous", Action: "auth.failed", Resource: "session", Detail: map[string]any{"reason": "invalid login link"}})
		}
		w.WriteHeader(http.StatusUnauthorized)
		linkPage.Execute(w, map[string]bool{"OK": false})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	id, exp, err := svc.Sessions.Open(ctx, p)
	if err != nil {
		http.Error(w, "cannot open a session: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", Expires: exp, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	s.audit(r, audit.Entry{Action: "auth.login", Resource: "session", Detail: map[string]any{"via": "link"}})
	linkPage.Execute(w, map[string]bool{"OK": true})
}
