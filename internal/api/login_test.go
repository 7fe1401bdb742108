package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func cookieOf(t *testing.T, r reply) string {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == SessionCookie {
			return c.Value
		}
	}
	t.Fatalf("no session cookie: %v", r.header)
	return ""
}

// Log in with a token, use the cookie, and log out; a cookie request that
// changes state needs a matching Origin; revoking the token ends its
// sessions.
func TestSessions(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	op := createToken(t, srv.URL, `{"name": "dash", "role": "operator"}`)
	r := call(t, "POST", srv.URL+"/api/v1/login", `{"token": "`+op.Secret+`"}`, "Authorization", "")
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	set := r.header.Get("Set-Cookie")
	if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") || strings.Contains(set, "Secure") {
		t.Fatalf("cookie flags: %s", set)
	}
	sid := cookieOf(t, r)
	withCookie := func(method, path, body string, headers ...string) reply {
		return call(t, method, srv.URL+path, body, append([]string{"Authorization", "", "Cookie", SessionCookie + "=" + sid}, headers...)...)
	}
	if r := withCookie("GET", "/api/v1/system", ""); r.status != 200 {
		t.Fatalf("GET with the cookie: %d %s", r.status, r.body)
	}
	if r := withCookie("PUT", "/api/v1/state/app/k", `{"a": 1}`); r.status != 403 || !strings.Contains(r.body, "cross-site") {
		t.Fatalf("PUT without Origin: %d %s", r.status, r.body)
	}
	if r := withCookie("PUT", "/api/v1/state/app/k", `{"a": 1}`, "Origin", "http://evil.example"); r.status != 403 {
		t.Fatalf("PUT from another origin: %d %s", r.status, r.body)
	}
	if r := withCookie("PUT", "/api/v1/state/app/k", `{"a": 1}`, "Origin", srv.URL); r.status != 200 {
		t.Fatalf("PUT from the daemon's origin: %d %s", r.status, r.body)
	}
	if r := withCookie("GET", "/api/v1/tokens", ""); r.status != 403 {
		t.Fatalf("an operator session listing tokens: %d", r.status)
	}
	if r := call(t, "DELETE", srv.URL+"/api/v1/tokens/dash", ""); r.status != 204 {
		t.Fatalf("revoke: %d", r.status)
	}
	if r := withCookie("GET", "/api/v1/system", ""); r.status != 401 {
		t.Fatalf("a session of a revoked token: %d %s", r.status, r.body)
	}
	// Logout ends an admin session.
	r = call(t, "POST", srv.URL+"/api/v1/login", `{"token": "`+token+`"}`, "Authorization", "")
	sid = cookieOf(t, r)
	if r := withCookie("POST", "/api/v1/logout", "", "Origin", srv.URL); r.status != 204 {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := withCookie("GET", "/api/v1/system", ""); r.status != 401 {
		t.Fatalf("after logout: %d", r.status)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/login", `{}`, "Authorization", ""); r.status != 400 {
		t.Fatalf("login without a token: %d", r.status)
	}
}

// Failed authentication is limited per address: past the limit every
// wrong attempt gets 429 with Retry-After, and a right one still passes (an
// agent on the same loopback address spraying bad tokens must not lock the
// operators out).
func TestBruteForceLimiter(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	for i := range maxFailures {
		if r := call(t, "GET", srv.URL+"/api/v1/system", "", "Authorization", "Bearer oxs_guess"+string(rune('a'+i))); r.status != 401 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	r := call(t, "GET", srv.URL+"/api/v1/system", "", "Authorization", "Bearer oxs_oneMoreGuess")
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d %v", maxFailures, r.status, r.header)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/login", `{"token": "oxs_wrong"}`, "Authorization", ""); r.status != 429 {
		t.Fatalf("wrong login while blocked: %d", r.status)
	}
	if r := call(t, "GET", srv.URL+"/api/v1/system", ""); r.status != 200 {
		t.Fatalf("the right token while the address is blocked: %d", r.status)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/login", `{"token": "`+token+`"}`, "Authorization", ""); r.status != 200 {
		t.Fatalf("right login while blocked: %d", r.status)
	}
}
