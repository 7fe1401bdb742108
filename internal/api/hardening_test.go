package api

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The failure limiter counts all of loopback as one client (127.3.x.y is
// the same machine) and an IPv6 client by its /64 (issue 15.5).
func TestClientIPKey(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:5000":                 "loopback",
		"127.3.9.7:5000":                 "loopback",
		"[::1]:5000":                     "loopback",
		"192.0.2.4:80":                   "192.0.2.4",
		"[2001:db8:1:2:aaaa::1]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb:cccc::9]:44": "2001:db8:1:2::/64",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		if got := clientIP(r); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}

// A body sent half and then never finished does not hold its connection
// past the body timeout (issue 15.5: 300 of them held 300 fds for 130 s).
func TestHalfSentBodyIsCut(t *testing.T) {
	old := bodyReadTimeout
	bodyReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyReadTimeout = old })
	srv, _ := daemonAPI(t, "1s", time.Minute)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tok"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("a half-sent body: %d", resp.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still held after %s", time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut after %s", d)
	}
}

// parent is oxios's own, for sub-agents: the API refuses it (issue 15.9).
func TestParentCannotBeGiven(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	r := call(t, "POST", srv.URL+"/api/v1/agents", `{"command": "true", "parent": "0193e2a4-0000-7000-8000-000000000000"}`)
	if r.status != 400 || !strings.Contains(r.body, `"field": "parent"`) {
		t.Fatalf("spawn with a parent: %d %s", r.status, r.body)
	}
}

// Keys the docs refuse are refused, and event data is an object (issue
// 15.9).
func TestKeysAndEventDataTheDocsRefuse(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	for _, key := range []string{"%2Fabs", "a%2F", "a%2F%2Fb", "a%2F.b"} {
		r := call(t, "PUT", srv.URL+"/api/v1/state/app/"+key, `{"x": 1}`)
		if r.status != 400 || !strings.Contains(r.body, `"field": "key"`) {
			t.Errorf("key %q: %d %s", key, r.status, r.body)
		}
	}
	if r := call(t, "PUT", srv.URL+"/api/v1/state/app/a/b.c", `{"x": 1}`); r.status != 200 && r.status != 201 {
		t.Errorf("a valid key with '/': %d %s", r.status, r.body)
	}
	for _, data := range []string{`"a string"`, `[1, 2]`, `42`} {
		r := call(t, "POST", srv.URL+"/api/v1/events", `{"type": "custom.x", "data": `+data+`}`)
		if r.status != 400 || !strings.Contains(r.body, `"field": "data"`) {
			t.Errorf("event data %s: %d %s", data, r.status, r.body)
		}
	}
	if r := call(t, "POST", srv.URL+"/api/v1/events", `{"type": "custom.x", "data": {"ok": true}}`); r.status != 201 {
		t.Errorf("event data object: %d %s", r.status, r.body)
	}
}

// Values that are JSON by the grammar but that readers choke on (jq,
// JavaScript) are refused, naming the value (issue 15.9).
func TestValuesReadersChokeOn(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	for name, v := range map[string]string{
		"huge number":    `{"n": 1e999}`,
		"invalid UTF-8":  "{\"s\": \"\xff\xfe\"}",
		"lone surrogate": `{"s": "\ud800"}`,
		"low surrogate":  `["\udc00"]`,
	} {
		r := call(t, "PUT", srv.URL+"/api/v1/state/app/k", v)
		if r.status != 400 || !strings.Contains(r.body, `"field": "value"`) {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	for name, v := range map[string]string{"a pair": `{"s": "\ud83d\ude00"}`, "escaped backslash": `{"s": "\\ud800"}`, "big but fine": `{"n": 1e308}`} {
		if r := call(t, "PUT", srv.URL+"/api/v1/state/app/k", v); r.status != 200 && r.status != 201 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}
