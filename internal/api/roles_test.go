package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/security"
)

func createToken(t *testing.T, url, body string) TokenCreated {
	t.Helper()
	r := call(t, "POST", url+"/api/v1/tokens", body)
	if r.status != http.StatusCreated {
		t.Fatalf("create token %s: %d %s", body, r.status, r.body)
	}
	var tc TokenCreated
	json.Unmarshal([]byte(r.body), &tc)
	return tc
}

func callAs(t *testing.T, tok, method, url, body string) reply {
	t.Helper()
	return call(t, method, url, body, "Authorization", "Bearer "+tok)
}

// Every route × every role: a role below the route's minimum gets 403 with
// the envelope; a role at or above it is never refused for its role.
func TestRouteRoleMatrix(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	secrets := map[security.Role]string{security.Admin: token}
	for _, r := range []security.Role{security.Viewer, security.Operator} {
		secrets[r] = createToken(t, srv.URL, `{"name": "`+r.String()+`", "role": "`+r.String()+`"}`).Secret
	}
	s := New(Options{})
	routes := s.routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		path := strings.NewReplacer("{ns}", "app", "{key...}", "k", "{id}", "nope", "{name}", "nope").Replace(pattern)
		for role, secret := range secrets {
			url := srv.URL + path
			if strings.HasSuffix(path, "/events") && method == "GET" {
				url += "?follow=false"
			}
			r := callAs(t, secret, method, url, "{}")
			if r.status >= 500 {
				t.Errorf("%s as %s: %d %s", rt.pattern, role, r.status, r.body)
			}
			forbidden := r.status == http.StatusForbidden
			if want := role < rt.role; forbidden != want {
				t.Errorf("%s as %s: %d %s (want forbidden=%v)", rt.pattern, role, r.status, r.body, want)
			}
			if forbidden {
				var env ErrorBody
				if json.Unmarshal([]byte(r.body), &env) != nil || env.Error.Code != "forbidden" || !strings.Contains(env.Error.Message, rt.role.String()) {
					t.Errorf("%s as %s: envelope %s", rt.pattern, role, r.body)
				}
			}
		}
	}
}

// A token works until it expires or is revoked, at once; list never shows
// a secret; bad input is a 4xx naming the field.
func TestTokenLifecycle(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	tc := createToken(t, srv.URL, `{"name": "ci", "role": "operator", "expires_in": "1s"}`)
	if !strings.HasPrefix(tc.Secret, "oxs_") || tc.Token.Role != security.Operator || tc.Token.ExpiresAt == nil {
		t.Fatalf("created %+v", tc)
	}
	if r := callAs(t, tc.Secret, "GET", srv.URL+"/api/v1/system", ""); r.status != 200 {
		t.Fatalf("fresh token: %d", r.status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for callAs(t, tc.Secret, "GET", srv.URL+"/api/v1/system", "").status != 401 {
		if time.Now().After(deadline) {
			t.Fatal("the token still works after it expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc = createToken(t, srv.URL, `{"name": "bot", "role": "viewer"}`)
	r := call(t, "GET", srv.URL+"/api/v1/tokens", "")
	if !strings.Contains(r.body, `"name": "bot"`) || strings.Contains(r.body, tc.Secret) || strings.Contains(r.body, "hash") {
		t.Fatalf("list: %s", r.body)
	}
	if r := call(t, "DELETE", srv.URL+"/api/v1/tokens/bot", ""); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := callAs(t, tc.Secret, "GET", srv.URL+"/api/v1/system", ""); r.status != 401 {
		t.Fatalf("a revoked token still works: %d", r.status)
	}
	for _, c := range []struct{ body, field string }{
		{`{"name": "x", "role": "root"}`, "role"},
		{`{"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}`, "expires_at"},
		{`{"name": "x", "role": "viewer", "expires_in": "-1h"}`, "expires_in"},
		{`{"name": "admin", "role": "viewer"}`, "name"},
		{`{"name": "has space", "role": "viewer"}`, "name"},
	} {
		r := call(t, "POST", srv.URL+"/api/v1/tokens", c.body)
		var env ErrorBody
		if json.Unmarshal([]byte(r.body), &env); r.status != 400 || env.Error.Field != c.field {
			t.Errorf("%s: %d %s (want 400 naming %s)", c.body, r.status, r.body, c.field)
		}
	}
	createToken(t, srv.URL, `{"name": "dup", "role": "viewer"}`)
	if r := call(t, "POST", srv.URL+"/api/v1/tokens", `{"name": "dup", "role": "viewer"}`); r.status != http.StatusConflict {
		t.Fatalf("duplicate name: %d", r.status)
	}
	if r := call(t, "DELETE", srv.URL+"/api/v1/tokens/nope", ""); r.status != http.StatusNotFound {
		t.Fatalf("revoke unknown: %d", r.status)
	}
}
