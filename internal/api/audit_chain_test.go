package api

import (
	"strings"
	"testing"
	"time"
)

// A request with invalid UTF-8 in its path, audited as a failed
// authentication, does not break the audit chain.
func TestBadPathDoesNotBreakTheAuditChain(t *testing.T) {
	srv, _ := daemonAPI(t, "1s", time.Minute)
	if r := call(t, "GET", srv.URL+"/api/v1/%ff", "", "Authorization", "Bearer nope"); r.status != 401 {
		t.Fatalf("bad token: %d %s", r.status, r.body)
	}
	r := call(t, "GET", srv.URL+"/api/v1/audit/verify", "")
	if r.status != 200 || !strings.Contains(r.body, `"ok": true`) {
		t.Fatalf("verify after one bad request: %d %s", r.status, r.body)
	}
}
