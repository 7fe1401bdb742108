package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/web"
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

// loginLinkCreate makes a one-time login link for the caller. Only a
// token can ask: a session making links for new sessions would outlive
// its own expiry.
func (s *Server) loginLinkCreate(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r.URL.Query()) {
		return
	}
	if via, _ := r.Context().Value(viaSessionKey{}).(bool); via {
		writeError(w, http.StatusForbidden, "login links are made with a token (oxios dashboard), not from a session", "")
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

// The page of a login link: a form that posts the code (login.js submits
// it at once), so that a mere GET — a link preview, a prefetch, a HEAD —
// never uses the code up. Its script and style are the dashboard's own
// files, under the same policy.
// linkPage writes the page; code is empty for "this link does not work".
// (No html/template: its reflection would keep every method of every type
// in the binary, doubling its size.)
func linkPage(w io.Writer, code string) {
	body := `<h1>This login link does not work</h1>
<p>It has expired or was already used. Run <code>oxios dashboard</code> again for a new one, or log in with a token on <a href="/">the dashboard</a>.</p>`
	if code != "" {
		body = `<h1>oxios</h1>
<form method="post" action="/login" id="link-form">
<input type="hidden" name="code" value="` + html.EscapeString(code) + `">
<p>Logging you in…</p>
<button type="submit">Log in</button>
</form>`
	}
	io.WriteString(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin"><title>oxios · log in</title>
<link rel="stylesheet" href="/app.css"><script type="module" src="/js/login.js"></script>
</head><body><main class="login">
`+body+`
</main></body></html>
`)
}

func pageHeaders(w http.ResponseWriter) {
	web.PageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
}

// loginLinkPage shows the page that posts a link's code.
func (s *Server) loginLinkPage(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w)
	code := r.URL.Query().Get("code")
	if len(code) > 100 {
		code = ""
	}
	linkPage(w, code)
}

// loginLink opens a session from a one-time code (posted by the link's
// page, from this origin) and sends the browser to the dashboard. Codes
// are 256 random bits: a wrong one is not counted as a guess, so that no
// page elsewhere can lock this machine's clients out by posting bad ones.
func (s *Server) loginLink(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w)
	svc := s.services.Load()
	if svc == nil || svc.Sessions == nil {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		linkPage(w, "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if !sameOrigin(r) || r.ParseForm() != nil {
		w.WriteHeader(http.StatusForbidden)
		linkPage(w, "")
		return
	}
	p, ok := s.links.use(r.PostForm.Get("code"))
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		linkPage(w, "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), oxios.BackboneTimeout)
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
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
