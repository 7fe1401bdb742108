package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/audit"
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

// A request with both Content-Length and chunked encoding, unauthenticated
// and never finished, is held no longer than the body timeout (issue
// 15.9: it was held open, the server draining a body that never ends).
func TestChunkedAndContentLengthIsCut(t *testing.T) {
	old := bodyReadTimeout
	bodyReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyReadTimeout = old })
	srv, _ := daemonAPI(t, "1s", time.Minute)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n{\"com"))
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// Then the connection ends: nothing more comes, and reading sees its close.
	_, err = io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still held after %s", time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("held for %s", d)
	}
}

// The body deadline ends at the body: a long answer after it (an event
// stream, a wait) is not cut by it.
func TestLongAnswersOutliveTheBodyDeadline(t *testing.T) {
	old := bodyReadTimeout
	bodyReadTimeout = 200 * time.Millisecond
	t.Cleanup(func() { bodyReadTimeout = old })
	srv, _ := daemonAPI(t, "1s", time.Minute)
	// A process agent that runs a second, spawned with a body; then waited
	// for, which answers only after the deadline has passed.
	r := call(t, "POST", srv.URL+"/api/v1/agents", `{"command": "/bin/sh", "args": ["-c", "sleep 1"]}`)
	if r.status != 201 {
		t.Fatalf("spawn: %+v", r)
	}
	var rec struct{ ID string }
	json.Unmarshal([]byte(r.body), &rec)
	start := time.Now()
	w := call(t, "POST", srv.URL+"/api/v1/agents/"+rec.ID+"/wait?timeout=10s", "")
	var ended struct{ State string }
	json.Unmarshal([]byte(w.body), &ended)
	if w.status != 200 || ended.State != "succeeded" || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("wait after %s: %+v", time.Since(start), w)
	}
	// An event stream outlives it too.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events?type=custom.*", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	time.Sleep(3 * bodyReadTimeout) // past the deadline, on purpose
	if p := call(t, "POST", srv.URL+"/api/v1/events", `{"type": "custom.ping", "data": {}}`); p.status != 201 {
		t.Fatalf("publish: %+v", p)
	}
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "custom.ping") {
				got <- true
				return
			}
		}
		got <- false
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the event stream ended before the event")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the stream")
	}
}

// Connections that have not authenticated are capped (issue 15.5): past
// the cap the oldest is closed, so idle ones held by someone without a
// token never keep an owner with one out, and an authenticated
// connection is never the one closed.
func TestUnauthenticatedConnectionsAreCapped(t *testing.T) {
	old := MaxUnauthenticated
	MaxUnauthenticated = 8
	t.Cleanup(func() { MaxUnauthenticated = old })
	srv, _ := daemonAPI(t, "1s", time.Minute)
	addr := strings.TrimPrefix(srv.URL, "http://")

	// An authenticated keep-alive connection.
	owner, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	ob := bufio.NewReader(owner)
	ask := func() error {
		owner.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := owner.Write([]byte("GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n")); err != nil {
			return err
		}
		resp, err := http.ReadResponse(ob, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := ask(); err != nil {
		t.Fatal(err)
	}

	// Three times the cap of idle connections that never send a byte.
	var idle []net.Conn
	for range 3 * MaxUnauthenticated {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// A new client with a token is served at once.
	start := time.Now()
	if r := call(t, "GET", srv.URL+"/api/v1/whoami", ""); r.status != 200 || time.Since(start) > 2*time.Second {
		t.Fatalf("a new authenticated client: %+v after %s", r, time.Since(start))
	}
	// The oldest idle ones were closed; the owner's connection was not.
	closed := 0
	for _, c := range idle[:2*MaxUnauthenticated] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed != 2*MaxUnauthenticated {
		t.Fatalf("%d of the %d oldest idle connections closed", closed, 2*MaxUnauthenticated)
	}
	if err := ask(); err != nil {
		t.Fatalf("the authenticated connection after the flood: %v", err)
	}
}

// Failed authentications with huge paths (issue 15.5: 30 of them with
// 900 KB paths grew the audit trail, which cannot be purged, by 27.7 MB):
// an entry records at most 256 bytes of the path, and the failures of one
// client in a minute are one entry at once and one with their count.
func TestFailedAuthAuditIsClippedAndCoalesced(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	s := srv.Config.Handler.(*Server)
	trail := s.services.Load().Audit
	ctx := context.Background()
	before, _ := trail.LastSeq(ctx)
	long := "/api/v1/" + strings.Repeat("a", 900<<10)
	statuses := map[int]int{}
	for range 30 {
		req, _ := http.NewRequest("GET", srv.URL+long, nil)
		req.Header.Set("Authorization", "Bearer oxs_wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[401] != maxFailures || statuses[429] != 30-maxFailures {
		t.Fatalf("statuses: %v", statuses)
	}
	after, _ := trail.LastSeq(ctx)
	if after-before != 1 {
		t.Fatalf("%d entries for the failures so far (want 1, the first)", after-before)
	}
	s.Stop() // writes the pending count
	es, err := trail.List(ctx, audit.Filter{Action: "auth.failed", After: before})
	if err != nil || len(es) != 2 {
		t.Fatalf("entries: %+v %v", es, err)
	}
	for _, e := range es {
		if len(e.Resource) > maxAuditedResource+len("…") {
			t.Fatalf("an entry records %d bytes of path", len(e.Resource))
		}
	}
	if n, _ := es[1].Detail["count"].(float64); int(n) != maxFailures-1 || es[1].Actor != "remote:loopback" {
		t.Fatalf("the coalesced entry: %+v", es[1])
	}
}
