package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/oxios"
)

// The audit trail's tail cut while the daemon is stopped (issue 15.6): with
// the stream's index deleted, verify said "intact"; with it kept, the
// daemon refused to start. Now the daemon starts, /readyz and doctor name
// the damage, audit verify says how many entries are missing, and the
// trail goes on.
func TestCutAuditTailIsReported(t *testing.T) {
	for _, keepIndex := range []bool{false, true} {
		name := "index deleted"
		if keepIndex {
			name = "index kept"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			pid := e.start()
			e.stopAtEnd()
			for range 20 {
				if r := e.oxios("agent", "spawn", "--", "true"); r.code != 0 {
					t.Fatalf("spawn: %s", r)
				}
			}
			var before oxios.AuditVerdict
			if r := e.oxios("audit", "verify", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &before) != nil || before.Entries < 20 {
				t.Fatalf("verify before: %s", r)
			}
			if r := e.oxios("stop"); r.code != 0 {
				t.Fatalf("stop: %s", r)
			}
			waitGone(t, pid, 10e9)
			cut := cutAuditTail(t, e.home, keepIndex)

			e.start()
			code, body := e.get("/readyz", "")
			var rd oxios.Readiness
			if code != 200 || json.Unmarshal([]byte(body), &rd) != nil || len(rd.Damaged) != 1 || !strings.Contains(rd.Damaged[0], "audit: the audit trail is damaged") {
				t.Fatalf("readyz: %d %s", code, body)
			}
			r := e.oxios("audit", "verify")
			if r.code != 1 || !strings.Contains(r.stderr, "missing") {
				t.Fatalf("audit verify: %s", r)
			}
			var v oxios.AuditVerdict
			json.Unmarshal([]byte(e.oxios("audit", "verify", "-o", "json").stdout), &v)
			if v.OK || v.Missing != uint64(cut) {
				t.Fatalf("verify: %+v (cut %d entries)", v, cut)
			}
			d := e.run([]string{"OPENAI_API_KEY=", "ANTHROPIC_API_KEY="}, "doctor")
			if d.code != 1 || !strings.Contains(d.stdout, "audit trail is damaged") || !strings.Contains(d.stdout, "entries missing") {
				t.Fatalf("doctor: %s", d)
			}
			// The trail goes on, and what is appended verifies from the note.
			if r := e.oxios("agent", "spawn", "--", "true"); r.code != 0 {
				t.Fatalf("spawn after: %s", r)
			}
			var after oxios.AuditVerdict
			json.Unmarshal([]byte(e.oxios("audit", "verify", "-o", "json").stdout), &after)
			if after.FirstBroken != v.FirstBroken || after.Missing != v.Missing || len(after.Damage) != len(v.Damage) || after.Head <= v.Head {
				t.Fatalf("verify after more entries: %+v (before %+v)", after, v)
			}
		})
	}
}

// cutAuditTail truncates the audit stream's block file at its last third
// (an entry's start) and deletes its index unless keepIndex; it returns
// how many entries it cut.
func cutAuditTail(t *testing.T, home string, keepIndex bool) int {
	t.Helper()
	msgs := filepath.Join(home, "data", "jetstream", "$G", "streams", audit.Stream, "msgs")
	blks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
	if len(blks) != 1 {
		t.Fatalf("block files: %v", blks)
	}
	b, err := os.ReadFile(blks[0])
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte("oxios.audit")
	var starts []int
	for i := 0; ; {
		j := bytes.Index(b[i:], marker)
		if j < 0 {
			break
		}
		starts = append(starts, i+j)
		i += j + len(marker)
	}
	keep := len(starts) * 2 / 3
	// A record's header (22 bytes) comes before its subject.
	if err := os.Truncate(blks[0], int64(starts[keep]-22)); err != nil {
		t.Fatal(err)
	}
	if !keepIndex {
		os.Remove(filepath.Join(msgs, "index.db"))
	}
	return len(starts) - keep
}
