package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/security"
)

// A one-time login link opens a session for the token that asked for it,
// once; a second use, or a made-up code, is a 401 page counted as a failed
// authentication.
func TestLoginLink(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	viewer := createToken(t, srv.URL, `{"name": "watcher", "role": "viewer"}`).Secret
	r := callAs(t, viewer, "POST", srv.URL+"/api/v1/login-links", "")
	var link struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if json.Unmarshal([]byte(r.body), &link); r.status != http.StatusCreated || !strings.HasPrefix(link.URL, srv.URL+"/login?code=") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if d := time.Until(link.ExpiresAt); d <= 0 || d > LinkTTL {
		t.Fatalf("expires in %s", d)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code := strings.TrimPrefix(link.URL, srv.URL+"/login?code=")
	// A GET (a preview, a prefetch) shows the page but uses nothing up.
	for _, m := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(m, link.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 || resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("%s of the link: %d %v", m, resp.StatusCode, resp.Cookies())
		}
	}
	post := func(code, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader("code="+code))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(code, "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a post from another origin: %d", resp.StatusCode)
	}
	resp := post(code, srv.URL)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("first use: %d cookie %+v", resp.StatusCode, cookie)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/whoami", nil)
	req.AddCookie(cookie)
	who, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	json.NewDecoder(who.Body).Decode(&me)
	who.Body.Close()
	if me["name"] != "watcher" || me["role"] != "viewer" {
		t.Fatalf("the session is not the token's: %v", me)
	}
	// Used once; a made-up code is refused too, and neither counts as a
	// guess toward the limit of failed authentications.
	for i := 0; i < 12; i++ {
		for _, c := range []string{code, "made-up"} {
			if resp := post(c, srv.URL); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
				t.Fatalf("%s: %d %v", c, resp.StatusCode, resp.Cookies())
			}
		}
	}
	if r := callAs(t, viewer, "GET", srv.URL+"/api/v1/whoami", ""); r.status != http.StatusOK {
		t.Fatalf("bad link codes locked the client out: %d", r.status)
	}
	// A session cannot make links (it would outlive its own expiry).
	req, _ = http.NewRequest("POST", srv.URL+"/api/v1/login-links", nil)
	req.AddCookie(cookie)
	req.Header.Set("Origin", srv.URL)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a session made a login link: %d", resp.StatusCode)
	}
}

// The overview counts agents by state and lists the running ones, with 60
// minutes of event counts.
func TestOverview(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	r := call(t, "POST", srv.URL+"/api/v1/agents", `{"command": "sleep", "args": ["30"]}`)
	if r.status != http.StatusCreated {
		t.Fatal(r.body)
	}
	var o Overview
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = call(t, "GET", srv.URL+"/api/v1/overview", "")
		json.Unmarshal([]byte(r.body), &o)
		// Running shows once the record says so; its agent.started event
		// is stored just after.
		if len(o.Running) == 1 && len(o.EventsPerMinute) == 60 && o.EventsPerMinute[59]+o.EventsPerMinute[58] >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if o.Agents.Total != 1 || o.Agents.ByState["running"] != 1 || len(o.EventsPerMinute) != 60 || o.EventsPerMinute[59]+o.EventsPerMinute[58] < 2 {
		t.Fatalf("%+v", o)
	}
}

// While the daemon boots, a session cannot be checked yet: the browser is
// told to retry (503), not that its session ended (401), so a dashboard
// open across a daemon restart stays logged in.
func TestSessionWhileStarting(t *testing.T) {
	s := New(Options{Authenticate: func(string) (security.Principal, bool) { return security.Principal{}, false }})
	req := httptest.NewRequest("GET", "/api/v1/events", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "abc"})
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
