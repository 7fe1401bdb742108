package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// errorField decodes an error envelope.
func errorField(t *testing.T, r reply) ErrorDetail {
	t.Helper()
	var env ErrorBody
	if err := json.Unmarshal([]byte(r.body), &env); err != nil {
		t.Fatalf("not an error envelope: %d %s", r.status, r.body)
	}
	return env.Error
}

// Cron jobs through the API: create, list, trigger, disable, delete; bad
// input is a 400 naming the field, and for expressions the position.
func TestCronAPI(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	base := srv.URL + "/api/v1/cron"
	for _, c := range []struct{ body, field, msg string }{
		{`{"name": "j", "schedule": "*/5 * * * mon-fry", "spec": {"command": "true"}}`, "schedule", "at position 11"},
		{`{"name": "j", "schedule": "*/5 * *", "spec": {"command": "true"}}`, "schedule", "needs 5 fields"},
		{`{"name": "j", "schedule": "@daily", "zone": "Atlantis/Capital", "spec": {"command": "true"}}`, "zone", "unknown time zone"},
		{`{"name": "j", "schedule": "@daily", "overlap": "never", "spec": {"command": "true"}}`, "overlap", "skip, queue or allow"},
		{`{"name": "j", "schedule": "@daily", "spec": {"command": "true", "priority": "urgent"}}`, "spec.priority", "critical, high"},
		{`{"name": "j", "schedule": "@daily", "spec": {"comand": "true"}}`, "comand", "unknown field"},
	} {
		r := call(t, "POST", base, c.body)
		e := errorField(t, r)
		if r.status != http.StatusBadRequest || e.Field != c.field || !strings.Contains(e.Message, c.msg) {
			t.Errorf("%s: %d %+v", c.body, r.status, e)
		}
	}
	r := call(t, "POST", base, `{"name": "hourly", "schedule": "@hourly", "zone": "Europe/Berlin", "spec": {"command": "sleep", "args": ["5"]}}`)
	if r.status != http.StatusCreated || !strings.Contains(r.body, `"next_run"`) || !strings.Contains(r.body, `"enabled": true`) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", base, `{"name": "hourly", "schedule": "@daily", "spec": {"command": "true"}}`); r.status != http.StatusConflict {
		t.Fatalf("create twice: %d %s", r.status, r.body)
	}
	r = call(t, "POST", base+"/hourly/trigger", "")
	var run struct {
		Action  string `json:"action"`
		AgentID string `json:"agent_id"`
		Manual  bool   `json:"manual"`
	}
	if json.Unmarshal([]byte(r.body), &run); r.status != http.StatusOK || run.Action != "run" || run.AgentID == "" || !run.Manual {
		t.Fatalf("trigger: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", base+"/hourly/trigger", ""); r.status != http.StatusOK || !strings.Contains(r.body, `"action": "skip"`) {
		t.Fatalf("trigger while the first run is active: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", srv.URL+"/api/v1/agents/"+run.AgentID, ""); !strings.Contains(r.body, `"oxios.cron": "hourly"`) {
		t.Fatalf("the agent is not labelled with its job: %s", r.body)
	}
	r = call(t, "POST", base+"/hourly/disable", "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"enabled": false`) || !strings.Contains(r.body, `"next_run": null`) {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	r = call(t, "GET", base, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"last_outcome": "skipped"`) || strings.Count(r.body, `"agent_id"`) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if r := call(t, "DELETE", base+"/hourly", ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/hourly", ""); r.status != http.StatusNotFound {
		t.Fatalf("get deleted: %d %s", r.status, r.body)
	}
}

// Budgets through the API: bad limits are a 400 naming the field; names
// with a '/' travel escaped; reset and delete.
func TestBudgetAPI(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	base := srv.URL + "/api/v1/budgets/"
	for _, c := range []struct{ name, body, field string }{
		{"global", `{"tokens": -5}`, "tokens"},
		{"global", `{"cost_usd": -1}`, "cost_usd"},
		{"global", `{"calls": 10, "window": "forever"}`, "window"},
		{"team", `{"calls": 10}`, "name"},
		{"global", `{}`, "tokens"},
	} {
		r := call(t, "PUT", base+c.name, c.body)
		if e := errorField(t, r); r.status != http.StatusBadRequest || e.Field != c.field {
			t.Errorf("%s %s: %d %+v", c.name, c.body, r.status, e)
		}
	}
	name := "label:example.com%2Fteam=research"
	r := call(t, "PUT", base+name, `{"cost_usd": 5, "window": "7d"}`)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"name": "label:example.com/team=research"`) || !strings.Contains(r.body, `"exhausted": false`) {
		t.Fatalf("set: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", srv.URL+"/api/v1/budgets", ""); !strings.Contains(r.body, `"window": "7d"`) {
		t.Fatalf("list: %s", r.body)
	}
	if r := call(t, "POST", base+name+"/reset", ""); r.status != http.StatusOK || !strings.Contains(r.body, `"reset_at"`) {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if r := call(t, "DELETE", base+name, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+name, ""); r.status != http.StatusNotFound {
		t.Fatalf("get deleted: %d %s", r.status, r.body)
	}
}
