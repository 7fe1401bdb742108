package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/supervisor"
)

func TestAgentsAPI(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	u := srv.URL + "/api/v1/agents"

	r := call(t, "POST", u, `{"command": "sh", "args": ["-c", "echo hi; exit 3"], "labels": {"team": "a"}}`)
	if r.status != http.StatusCreated || !strings.HasPrefix(r.header.Get("Location"), "/api/v1/agents/") {
		t.Fatalf("spawn: %d %s", r.status, r.body)
	}
	var rec supervisor.Record
	json.Unmarshal([]byte(r.body), &rec)
	if rec.ID == "" || rec.Spec.Restart.Policy != "never" || rec.Spec.StopTimeout != "1s" || rec.Spec.Priority != "normal" {
		t.Fatalf("defaults not filled in: %s", r.body)
	}
	r = call(t, "POST", u+"/"+rec.ID+"/wait?timeout=20s", "")
	json.Unmarshal([]byte(r.body), &rec)
	if r.status != 200 || rec.State != supervisor.Failed || rec.Reason != "exit status 3" || *rec.ExitCode != 3 {
		t.Fatalf("wait: %d %s", r.status, r.body)
	}
	if r = call(t, "GET", u+"/"+rec.ID+"/logs", ""); r.status != 200 || !strings.Contains(r.body, `"hi"`) {
		t.Fatalf("logs: %d %s", r.status, r.body)
	}

	// Two slots: the third long agent waits in the queue, visible by priority.
	var long []string
	for range 3 {
		r = call(t, "POST", u, `{"command": "sleep", "args": ["100"], "priority": "high"}`)
		json.Unmarshal([]byte(r.body), &rec)
		long = append(long, rec.ID)
	}
	if rec.State != supervisor.Queued || rec.QueuePosition != 1 {
		t.Fatalf("third agent: %s position %d", rec.State, rec.QueuePosition)
	}
	r = call(t, "GET", srv.URL+"/api/v1/scheduler", "")
	if r.status != 200 || !strings.Contains(r.body, `"running": 2`) || !strings.Contains(r.body, long[2]) {
		t.Fatalf("scheduler: %s", r.body)
	}
	// Filters.
	r = call(t, "GET", u+"?label=team=a&state=failed", "")
	var list agentList
	json.Unmarshal([]byte(r.body), &list)
	if len(list.Items) != 1 || list.Items[0].Spec.Labels["team"] != "a" {
		t.Fatalf("filtered list: %s", r.body)
	}
	r = call(t, "GET", u+"?limit=2", "")
	json.Unmarshal([]byte(r.body), &list)
	if len(list.Items) != 2 || list.Items[0].ID != long[2] || list.NextCursor != long[1] {
		t.Fatalf("first page: %s", r.body)
	}
	r = call(t, "GET", u+"?limit=2&cursor="+list.NextCursor, "")
	json.Unmarshal([]byte(r.body), &list)
	if len(list.Items) != 2 || list.Items[0].ID != long[0] || list.NextCursor != "" {
		t.Fatalf("second page: %s", r.body)
	}

	// Cancel the queued one, kill a running one with a grace period.
	r = call(t, "POST", u+"/"+long[2]+"/kill", "")
	if json.Unmarshal([]byte(r.body), &rec); rec.State != supervisor.Killed || rec.Reason != "cancelled" {
		t.Fatalf("cancel: %s", r.body)
	}
	r = call(t, "POST", u+"/"+long[0]+"/kill?grace=0s", "")
	if json.Unmarshal([]byte(r.body), &rec); rec.State != supervisor.Killed || rec.Reason != "kill requested" {
		t.Fatalf("kill: %s", r.body)
	}
	if r = call(t, "DELETE", u+"/"+long[1], ""); r.status != http.StatusConflict {
		t.Fatalf("delete of a running agent: %d %s", r.status, r.body)
	}
	if r = call(t, "DELETE", u+"/"+long[0], ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r = call(t, "GET", u+"/"+long[0], ""); r.status != http.StatusNotFound {
		t.Fatalf("get after delete: %d", r.status)
	}
}

func TestAgentsAPIBadInput(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	u := srv.URL + "/api/v1/agents"
	for _, c := range []struct {
		method, path, body string
		status             int
		field              string
	}{
		{"POST", "", `{}`, 400, "command"},
		{"POST", "", `{"command": ""}`, 400, "command"},
		{"POST", "", `{"command": 5}`, 400, "command"},
		{"POST", "", `{"command": "x", "args": "a b"}`, 400, "args"},
		{"POST", "", `{"command": "x", "restart": {"policy": "sometimes"}}`, 400, "restart.policy"},
		{"POST", "", `{"command": "x", "restart": {"max_restarts": -1}}`, 400, "restart.max_restarts"},
		{"POST", "", `{"command": "x", "restart": {"backoff": {"initial": "fast"}}}`, 400, "restart.backoff.initial"},
		{"POST", "", `{"command": "x", "timeout": "-5s"}`, 400, "timeout"},
		{"POST", "", `{"command": "x", "timeout": 5}`, 400, "timeout"},
		{"POST", "", `{"command": "x", "priority": "urgent"}`, 400, "priority"},
		{"POST", "", `{"command": "x", "kind": "robot"}`, 400, "kind"},
		{"POST", "", `{"command": "x", "colour": "red"}`, 400, "colour"},
		{"POST", "", `{"command": "x"} {}`, 400, ""},
		{"POST", "", `not json`, 400, ""},
		{"POST", "", ``, 400, ""},
		{"GET", "?state=sleeping", "", 400, "state"},
		{"GET", "?kind=robot", "", 400, "kind"},
		{"GET", "?label=nokey", "", 400, "label"},
		{"GET", "?limit=0", "", 400, "limit"},
		{"GET", "?bogus=1", "", 400, "bogus"},
		{"GET", "/nope", "", 404, "id"},
		{"POST", "/nope/wait?timeout=soon", "", 400, "timeout"},
		{"POST", "/nope/kill?grace=-1s", "", 400, "grace"},
		{"POST", "/nope/kill", "", 404, "id"},
		{"GET", "/nope/logs", "", 404, "id"},
	} {
		r := call(t, c.method, u+c.path, c.body)
		var env ErrorBody
		if r.status != c.status || json.Unmarshal([]byte(r.body), &env) != nil || env.Error.Field != c.field || env.Error.Message == "" {
			t.Errorf("%s %s %s: %d %s (want %d naming %q)", c.method, c.path, c.body, r.status, r.body, c.status, c.field)
		}
	}
	var list agentList
	r := call(t, "GET", u, "")
	if json.Unmarshal([]byte(r.body), &list); len(list.Items) != 0 {
		t.Fatalf("bad input left records: %s", r.body)
	}
}

// logs?follow=1 streams the tail, then new lines, and ends with the agent.
func TestAgentLogsSSE(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	r := call(t, "POST", srv.URL+"/api/v1/agents", `{"command": "sh", "args": ["-c", "echo one; sleep 0.3; echo two"]}`)
	var rec supervisor.Record
	json.Unmarshal([]byte(r.body), &rec)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var lines []string
	for ev := range sse(t, ctx, srv.URL+"/api/v1/agents/"+rec.ID+"/logs?follow=1") {
		if ev.event == "end" {
			break
		}
		var l string
		json.Unmarshal([]byte(ev.data), &l)
		lines = append(lines, l)
	}
	if strings.Join(lines, ",") != "one,two" {
		t.Fatalf("streamed lines %q", lines)
	}
}
