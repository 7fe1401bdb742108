package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/budget"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/cluster"
	"github.com/oxios/oxios/internal/cron"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/scheduler"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
)

// daemonAPI serves the API over real HTTP on a real embedded backbone.
func daemonAPI(t testing.TB, sync string, heartbeat time.Duration) (*httptest.Server, *bus.Bus) {
	t.Helper()
	return daemonAPIWith(t, sync, heartbeat, scheduler.Limits{MaxRunning: 2, MaxRunningLLM: 1})
}

// daemonAPIWith is daemonAPI with the given scheduler limits.
func daemonAPIWith(t testing.TB, sync string, heartbeat time.Duration, lim scheduler.Limits) (*httptest.Server, *bus.Bus) {
	t.Helper()
	bb := backbonetest.Start(t, sync)
	ctx := context.Background()
	st, err := store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	b, err := bus.Open(ctx, bb.JS, bus.Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	home := t.TempDir()
	sup, err := supervisor.Open(ctx, supervisor.Options{
		JS: bb.JS, Bus: b, Scheduler: scheduler.New(lim), Node: "n1",
		WorkspacesDir: filepath.Join(home, "workspaces"), LogDir: filepath.Join(home, "agents"),
		Defaults: supervisor.SpecDefaults{StopTimeout: time.Second}, Retain: 100, RetainFor: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sup.Close(ctx)
	})
	tokens, err := security.OpenTokens(ctx, bb.JS, security.HashToken(token), "n1", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tokens.Close)
	sessions, err := security.OpenSessions(ctx, bb.JS, tokens, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authenticate: func(tok string) (security.Principal, bool) { return tokens.Authenticate(tok) },
		Readiness:    func() Readiness { return Readiness{Ready: true} },
		System:       func() System { return System{} },
		Heartbeat:    heartbeat,
		Reload:       func(context.Context) (ReloadResult, error) { return ReloadResult{}, nil },
		Backup:       func(context.Context, io.Writer) error { return nil },
	})
	trail, err := audit.Open(ctx, bb.JS, audit.Options{KeyPath: filepath.Join(home, "secrets", "audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	budgets, err := budget.Open(ctx, bb.JS, 1, "n1", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(budgets.Close)
	jobs, err := cron.Open(ctx, cron.Options{JS: bb.JS, Node: "n1", Agents: sup, Bus: b, Defaults: supervisor.SpecDefaults{StopTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	approvals, err := approval.Open(ctx, bb.JS, 1, b, trail)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(approvals.Close)
	nodes, err := cluster.Join(ctx, cluster.Options{JS: bb.JS, Lease: 5 * time.Second, // no Bus: the event tests count sequences
		Self: oxios.Node{Name: "n1", Address: "http://127.0.0.1:4200", Instance: "test", Labels: map[string]string{}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes.Leave(context.Background()) })
	s.Attach(&Services{State: st, Bus: b, Agents: sup, Audit: trail, Tokens: tokens, Sessions: sessions, Approvals: approvals, Budgets: budgets, Cron: jobs, Nodes: nodes})
	srv := httptest.NewUnstartedServer(s)
	srv.Listener = s.Listen(srv.Listener)
	srv.Config.ConnContext = s.ConnContext
	srv.Config.RegisterOnShutdown(s.Stop)
	srv.Start()
	t.Cleanup(func() { s.Stop(); srv.Close() })
	return srv, b
}

type reply struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, method, url, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func TestStateAPI(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	u := srv.URL + "/api/v1/state/app/cfg/main"

	if r := call(t, "GET", u, ""); r.status != 404 || !strings.Contains(r.body, "no document app/cfg/main") {
		t.Fatalf("get missing: %+v", r)
	}
	r := call(t, "PUT", u, `{"v":1}`, "If-None-Match", "*")
	if r.status != 201 || r.header.Get("ETag") == "" {
		t.Fatalf("create: %+v", r)
	}
	rev1 := r.header.Get("ETag")
	if r := call(t, "PUT", u, `{"v":1}`, "If-None-Match", "*"); r.status != 412 {
		t.Fatalf("create existing: %+v", r)
	}
	r = call(t, "GET", u, "")
	if r.status != 200 || r.body != `{"v":1}` || r.header.Get("ETag") != rev1 {
		t.Fatalf("get: %+v", r)
	}
	if r := call(t, "PUT", u, `{"v":2}`, "If-Match", `"999"`); r.status != 412 || !strings.Contains(r.body, "precondition_failed") {
		t.Fatalf("stale If-Match: %+v", r)
	}
	r = call(t, "PUT", u, `{"v":2}`, "If-Match", rev1)
	if r.status != 200 || r.header.Get("ETag") == rev1 {
		t.Fatalf("CAS put: %+v", r)
	}
	rev2 := r.header.Get("ETag")
	if r := call(t, "DELETE", u, "", "If-Match", rev1); r.status != 412 {
		t.Fatalf("stale delete: %+v", r)
	}
	call(t, "PUT", srv.URL+"/api/v1/state/app/cfg/other", `2`)
	call(t, "PUT", srv.URL+"/api/v1/state/app/zzz", `3`)
	r = call(t, "GET", srv.URL+"/api/v1/state/app?prefix=cfg/&limit=1", "")
	var page listResult
	json.Unmarshal([]byte(r.body), &page)
	if r.status != 200 || len(page.Items) != 1 || page.Items[0].Key != "cfg/main" || page.NextCursor == "" {
		t.Fatalf("list page 1: %+v", r)
	}
	r = call(t, "GET", srv.URL+"/api/v1/state/app?prefix=cfg/&limit=1&cursor="+page.NextCursor, "")
	page = listResult{}
	json.Unmarshal([]byte(r.body), &page)
	if len(page.Items) != 1 || page.Items[0].Key != "cfg/other" || page.NextCursor != "" {
		t.Fatalf("list page 2: %+v", r)
	}
	if r := call(t, "DELETE", u, "", "If-Match", rev2); r.status != 204 {
		t.Fatalf("delete: %+v", r)
	}
	if r := call(t, "DELETE", u, ""); r.status != 404 {
		t.Fatalf("delete again: %+v", r)
	}
}

func TestStateAPIBadInput(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	base := srv.URL + "/api/v1/state/"
	big := `"` + strings.Repeat("x", store.MaxValueSize) + `"`
	for _, c := range []struct {
		name, method, url, body string
		headers                 []string
		status                  int
		field                   string
	}{
		{"bad namespace", "PUT", base + "Bad/k", `1`, nil, 400, "namespace"},
		{"bad key", "PUT", base + "app/a..b", `1`, nil, 400, "key"},
		{"not JSON", "PUT", base + "app/k", `{nope`, nil, 400, "value"},
		{"empty body", "PUT", base + "app/k", ``, nil, 400, "value"},
		{"too large", "PUT", base + "app/k", big, nil, 413, "value"},
		{"bad If-Match", "PUT", base + "app/k", `1`, []string{"If-Match", "abc"}, 400, "If-Match"},
		{"bad If-None-Match", "PUT", base + "app/k", `1`, []string{"If-None-Match", `"3"`}, 400, "If-None-Match"},
		{"both conditions", "PUT", base + "app/k", `1`, []string{"If-Match", "3", "If-None-Match", "*"}, 400, "If-None-Match"},
		{"bad If-Match on delete", "DELETE", base + "app/k", ``, []string{"If-Match", "-1"}, 400, "If-Match"},
		{"unknown list param", "GET", base + "app?pfx=a", ``, nil, 400, "pfx"},
		{"bad limit", "GET", base + "app?limit=0", ``, nil, 400, "limit"},
		{"bad prefix", "GET", base + "app?prefix=a*", ``, nil, 400, "prefix"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, c.method, c.url, c.body, c.headers...)
			var e ErrorBody
			json.Unmarshal([]byte(r.body), &e)
			if r.status != c.status || e.Error.Field != c.field || e.Error.Message == "" {
				t.Fatalf("got %d %s, want %d naming %s", r.status, r.body, c.status, c.field)
			}
		})
	}
	// Nothing of the rejected writes was stored.
	if r := call(t, "GET", base+"app/k", ""); r.status != 404 {
		t.Fatalf("a rejected write was stored: %+v", r)
	}
}

func TestPublishAPI(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	u := srv.URL + "/api/v1/events"
	r := call(t, "POST", u, `{"type":"custom.deploy","agent_id":"a-1","data":{"ok":true}}`)
	var ev bus.Event
	json.Unmarshal([]byte(r.body), &ev)
	if r.status != 201 || ev.Seq == 0 || ev.Type != "custom.deploy" || ev.AgentID != "a-1" {
		t.Fatalf("publish: %+v", r)
	}
	for body, field := range map[string]string{
		`{"type":"agent.started"}`:             "type",
		`{"type":"custom.Bad"}`:                "type",
		`{"type":"custom.x","agent_id":"a b"}`: "agent",
		`{"type":"custom.x","extra":1}`:        "",
		`not json`:                             "",
	} {
		r := call(t, "POST", u, body)
		var e ErrorBody
		json.Unmarshal([]byte(r.body), &e)
		if r.status != 400 || e.Error.Field != field {
			t.Errorf("publish %s: %d %s, want 400 naming %q", body, r.status, r.body, field)
		}
	}
}

// sseEvent is one parsed SSE message.
type sseEvent struct {
	id, event, data string
	comment         bool
}

// sse reads an event stream in the background.
func sse(t *testing.T, ctx context.Context, url string, headers ...string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	out := make(chan sseEvent, 1000)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				out <- cur
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				cur.comment = true
				cur.data = line
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if !e.comment {
				return e
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
	}
}

// A client that reconnects with Last-Event-ID gets exactly what it missed.
func TestSSEResume(t *testing.T) {
	srv, b := daemonAPI(t, "1s", time.Minute)
	url := srv.URL + "/api/v1/events?type=custom.*"
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := sse(t, ctx1, url)
	pub := func(i int) {
		if _, err := b.Publish(context.Background(), bus.Event{Type: "custom.n", Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		pub(i)
	}
	b.Publish(context.Background(), bus.Event{Type: "agent.other"}) // filtered out
	var lastID string
	for i := 1; i <= 3; i++ {
		e := nextEvent(t, first)
		var ev bus.Event
		json.Unmarshal([]byte(e.data), &ev)
		if e.event != "custom.n" || e.id != fmt.Sprint(ev.Seq) || string(ev.Data) != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v", i, e)
		}
		lastID = e.id
	}
	cancel1() // the client goes away after event 3
	for i := 6; i <= 8; i++ {
		pub(i)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	second := sse(t, ctx2, url, "Last-Event-ID", lastID)
	for i := 4; i <= 8; i++ {
		e := nextEvent(t, second)
		var ev bus.Event
		json.Unmarshal([]byte(e.data), &ev)
		if string(ev.Data) != fmt.Sprint(i) {
			t.Fatalf("after resume got %s, want %d", ev.Data, i)
		}
	}
	// ?since= resumes the same way.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	third := sse(t, ctx3, url+"&since="+lastID)
	if e := nextEvent(t, third); !strings.Contains(e.data, `"data":4`) {
		t.Fatalf("?since: %+v", e)
	}
}

func TestSSEHeartbeatAndFilters(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := sse(t, ctx, srv.URL+"/api/v1/events")
	deadline := time.After(10 * time.Second)
	for beats := 0; beats < 2; {
		select {
		case e := <-ch:
			if e.comment && e.data == ": heartbeat" {
				beats++
			}
		case <-deadline:
			t.Fatal("no heartbeats")
		}
	}
	for q, field := range map[string]string{
		"?type=Bad.type": "type",
		"?agent=a%20b":   "agent",
		"?since=x":       "since",
		"?follow=maybe":  "follow",
		"?bogus=1":       "bogus",
	} {
		r := call(t, "GET", srv.URL+"/api/v1/events"+q, "")
		var e ErrorBody
		json.Unmarshal([]byte(r.body), &e)
		if r.status != 400 || e.Error.Field != field {
			t.Errorf("%s: %d %s, want 400 naming %s", q, r.status, r.body, field)
		}
	}
	r := call(t, "GET", srv.URL+"/api/v1/events", "", "Last-Event-ID", "nope")
	if r.status != 400 || !strings.Contains(r.body, "Last-Event-ID") {
		t.Errorf("bad Last-Event-ID: %+v", r)
	}
	r = call(t, "GET", srv.URL+"/api/v1/events?since=abc", "", "Last-Event-ID", "3")
	if r.status != 400 || !strings.Contains(r.body, `"since"`) {
		t.Errorf("bad since beside a good Last-Event-ID: %+v", r)
	}
}

// follow=false ends the stream once the stored events are sent.
func TestSSEWithoutFollowEnds(t *testing.T) {
	srv, b := daemonAPI(t, "1s", time.Minute)
	for i := 0; i < 3; i++ {
		b.Publish(context.Background(), bus.Event{Type: "custom.n"})
	}
	for _, q := range []string{"?since=0&follow=false", "?follow=false"} {
		r := call(t, "GET", srv.URL+"/api/v1/events"+q, "")
		if r.status != 200 || strings.Count(r.body, "event: custom.n") != 3 {
			t.Fatalf("%s: %+v", q, r)
		}
	}
	r := call(t, "GET", srv.URL+"/api/v1/events?since=2&follow=false", "")
	if strings.Count(r.body, "event: custom.n") != 1 || !strings.Contains(r.body, "id: 3") {
		t.Fatalf("since=2: %+v", r)
	}
}

// A live stream opens with the position it starts after, so a client that
// has seen no event yet can still resume exactly.
func TestSSEOpeningID(t *testing.T) {
	srv, b := daemonAPI(t, "1s", time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := sse(t, ctx, srv.URL+"/api/v1/events")
	for i := 0; i < 3; i++ {
		b.Publish(context.Background(), bus.Event{Type: "custom.n"})
	}
	for i := 0; i < 3; i++ {
		nextEvent(t, first) // the live reader has handed out event 3
	}
	opening := <-sse(t, ctx, srv.URL+"/api/v1/events")
	if !opening.comment || opening.id != "3" {
		t.Fatalf("opening block %+v, want id 3", opening)
	}
	since := <-sse(t, ctx, srv.URL+"/api/v1/events?since=1")
	if since.id != "1" {
		t.Fatalf("opening block with since=1: %+v", since)
	}
}
