package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oxios/oxios/internal/security"
)

const token = "oxs_test-token"

func newServer(t *testing.T, ready *atomic.Bool) *httptest.Server {
	t.Helper()
	h := New(Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authenticate: func(tok string) (security.Principal, bool) {
			return security.Principal{Name: "admin", Role: security.Admin}, tok == token
		},
		Readiness: func() Readiness {
			if ready.Load() {
				return Readiness{Ready: true, PID: 7, Parts: []PartStatus{{Name: "http", State: "ready"}, {Name: "store", State: "ready"}}}
			}
			return Readiness{PID: 7, Parts: []PartStatus{{Name: "http", State: "ready"}, {Name: "store", State: "starting"}}, NotReady: []string{"store"}}
		},
		System: func() System { return System{Node: "n1", PID: 7} },
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, auth string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func envelope(t *testing.T, b []byte) ErrorDetail {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an error envelope: %s (%v)", b, err)
	}
	return e.Error
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	srv := newServer(t, &ready)
	if resp, _ := get(t, srv.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	resp, b := get(t, srv.URL+"/readyz", "")
	var r Readiness
	json.Unmarshal(b, &r)
	if resp.StatusCode != 503 || r.Ready || len(r.NotReady) != 1 || r.NotReady[0] != "store" {
		t.Fatalf("readyz while booting: %d %s", resp.StatusCode, b)
	}
	ready.Store(true)
	if resp, b := get(t, srv.URL+"/readyz", ""); resp.StatusCode != 200 || !strings.Contains(string(b), `"ready": true`) {
		t.Fatalf("readyz when ready: %d %s", resp.StatusCode, b)
	}
}

func TestAuth(t *testing.T) {
	var ready atomic.Bool
	srv := newServer(t, &ready)
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"missing", "", 401},
		{"wrong token", "Bearer oxs_nope", 401},
		{"wrong scheme", "Basic " + token, 401},
		{"no scheme", token, 401},
		{"good", "Bearer " + token, 200},
		{"scheme case", "bearer " + token, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := get(t, srv.URL+"/api/v1/system", c.auth)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if c.status == 401 {
				if e := envelope(t, b); e.Code != "unauthorized" {
					t.Fatalf("code %q", e.Code)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			}
		})
	}
	// Unknown routes are not revealed before authentication.
	if resp, _ := get(t, srv.URL+"/api/v1/nope", ""); resp.StatusCode != 401 {
		t.Fatalf("unknown route without token: %d, want 401", resp.StatusCode)
	}
}

func TestUnknownRoutesGetJSON(t *testing.T) {
	var ready atomic.Bool
	srv := newServer(t, &ready)
	resp, b := get(t, srv.URL+"/api/v1/nope", "Bearer "+token)
	if resp.StatusCode != 404 || envelope(t, b).Code != "not_found" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("unknown route: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/v1/system", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 405 || envelope(t, b).Code != "method_not_allowed" || !strings.Contains(r2.Header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %s allow=%q", r2.StatusCode, b, r2.Header.Get("Allow"))
	}
}

func TestSystem(t *testing.T) {
	var ready atomic.Bool
	srv := newServer(t, &ready)
	_, b := get(t, srv.URL+"/api/v1/system", "Bearer "+token)
	var s System
	if err := json.Unmarshal(b, &s); err != nil || s.Node != "n1" || s.PID != 7 {
		t.Fatalf("system: %s %v", b, err)
	}
}
