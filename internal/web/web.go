// Package web serves the dashboard: static HTML, CSS and JavaScript modules
// embedded in the binary, with no build step. The pages talk to the REST
// API and the event stream with the session cookie of POST /api/v1/login.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the embedded dashboard files. Pages may load only the
// daemon's own scripts, styles and API: no inline script, no other origin.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		PageHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// PageHeaders sets the policy of every page the daemon serves: only its own
// scripts, styles and API, never framed. (same-origin, not no-referrer:
// with no-referrer a form posts "Origin: null".)
func PageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}
