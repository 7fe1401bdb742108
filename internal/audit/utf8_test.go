package audit

import (
	"context"
	"testing"
)

// An entry whose Resource holds invalid UTF-8 (a failed auth on
// GET /api/v1/%ff, whose decoded path is "\xff") still verifies.
func TestInvalidUTF8DoesNotBreakTheChain(t *testing.T) {
	l, bb := open(t, t.TempDir())
	defer bb.Close()
	ctx := context.Background()
	if _, err := l.Append(ctx, Entry{Actor: "remote:1.2.3.4:5", Action: "auth.failed", Resource: "GET /api/v1/\xff", Outcome: "denied"}); err != nil {
		t.Fatal(err)
	}
	v, err := l.Verify(ctx)
	if err != nil || !v.OK {
		t.Fatalf("untampered trail fails verify: %+v %v", v, err)
	}
}
