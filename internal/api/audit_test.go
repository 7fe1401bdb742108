package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/audit"
)

// Security-relevant requests land in the audit trail, which verifies.
func TestAuditTrail(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	r := call(t, "POST", srv.URL+"/api/v1/agents", `{"command": "sleep", "args": ["100"]}`)
	var rec struct{ ID string }
	json.Unmarshal([]byte(r.body), &rec)
	call(t, "POST", srv.URL+"/api/v1/agents/"+rec.ID+"/kill?grace=0s", "")
	call(t, "PUT", srv.URL+"/api/v1/state/app/k", `{"a": 1}`)
	call(t, "DELETE", srv.URL+"/api/v1/state/app/k", "")
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/system", nil)
	req.Header.Set("Authorization", "Bearer oxs_wrongwrongwrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("bad token: %v %v", err, resp)
	}
	resp.Body.Close()

	r = call(t, "GET", srv.URL+"/api/v1/audit", "")
	var list auditList
	json.Unmarshal([]byte(r.body), &list)
	var actions []string
	for _, e := range list.Items {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, " "); got != "agent.spawn agent.kill state.delete auth.failed" {
		t.Fatalf("audited %q\n%s", got, r.body)
	}
	if strings.Contains(r.body, "oxs_wrong") {
		t.Fatal("a token reached the audit trail")
	}
	r = call(t, "GET", srv.URL+"/api/v1/audit?action=agent.*&limit=1", "")
	json.Unmarshal([]byte(r.body), &list)
	if len(list.Items) != 1 || list.NextAfter != 1 {
		t.Fatalf("filtered page: %s", r.body)
	}
	r = call(t, "GET", srv.URL+"/api/v1/audit/verify", "")
	var v audit.Verdict
	if json.Unmarshal([]byte(r.body), &v); !v.OK || v.Entries != 4 {
		t.Fatalf("verify: %s", r.body)
	}
	for _, q := range []string{"since=yesterday", "after=x", "limit=0", "bogus=1"} {
		if r := call(t, "GET", srv.URL+"/api/v1/audit?"+q, ""); r.status != 400 {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
}
