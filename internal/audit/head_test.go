package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
)

// cutTail, with the backbone closed, truncates the audit
// stream's block file where entry from begins, and removes the stream's
// index unless keepIndex.
func cutTail(t *testing.T, dir string, from int, keepIndex bool) {
	t.Helper()
	msgs := filepath.Join(dir, "data", "jetstream", "$G", "streams", Stream, "msgs")
	blk := filepath.Join(msgs, "1.blk")
	b, err := os.ReadFile(blk)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, fmt.Appendf(nil, `"seq":%d,`, from))
	if i < 0 {
		t.Fatalf("entry %d is not in %s", from, blk)
	}
	// Back to the start of its record: the record header precedes the
	// subject, which precedes the data.
	j := bytes.LastIndex(b[:i], []byte(subject))
	if err := os.Truncate(blk, int64(j-22)); err != nil {
		t.Fatal(err)
	}
	if !keepIndex {
		if err := os.Remove(filepath.Join(msgs, "index.db")); err != nil {
			t.Fatal(err)
		}
	}
}

// A tail cut from the stream (issue 15.6: with its index deleted, verify
// said "intact: 69 entries" while nine were gone; with the index kept, the
// daemon refused to start). The trail opens, says it is damaged, notes it
// in a signed entry, goes on appending, and Verify reports what is
// missing, and nothing else.
func TestCutTailIsReported(t *testing.T) {
	for _, keepIndex := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep index %v", keepIndex), func(t *testing.T) {
			dir := t.TempDir()
			l, bb := open(t, dir)
			ctx := context.Background()
			for i := range 78 {
				if _, err := l.Append(ctx, Entry{Actor: "admin", Action: "agent.kill", Resource: fmt.Sprintf("agent/%02d", i+1)}); err != nil {
					t.Fatal(err)
				}
			}
			if v, err := l.Verify(ctx); err != nil || !v.OK || v.Head != 78 {
				t.Fatalf("verify before: %+v %v", v, err)
			}
			bb.Close()
			cutTail(t, dir, 70, keepIndex)

			l, bb = open(t, dir) // it opens: the daemon is not lost with its trail
			defer bb.Close()
			if d := l.Damage(); !strings.Contains(d, "damaged") {
				t.Fatalf("Damage() = %q", d)
			}
			v, err := l.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v.OK || v.FirstBroken != 70 || v.Missing != 9 {
				t.Fatalf("verify after the cut: %+v (want entry 70 first broken, 9 missing)", v)
			}
			// It keeps appending, chained from the note of the damage.
			for range 5 {
				if _, err := l.Append(ctx, Entry{Actor: "admin", Action: "agent.spawn"}); err != nil {
					t.Fatal(err)
				}
			}
			after, err := l.Verify(ctx)
			if err != nil || after.OK || after.FirstBroken != 70 || after.Missing != 9 || len(after.Damage) != len(v.Damage) {
				t.Fatalf("verify after more appends: %+v %v (before them: %+v)", after, err, v)
			}
			notes, _ := l.List(ctx, Filter{Action: DamagedAction})
			if len(notes) != 1 {
				t.Fatalf("%d %s entries", len(notes), DamagedAction)
			}

			// Reopened, the trail no longer looks damaged to Open (its
			// head matches its end again), and Verify still tells it.
			bb.Close()
			l, bb = open(t, dir)
			defer bb.Close()
			if d := l.Damage(); d != "" {
				t.Fatalf("a second open: Damage() = %q", d)
			}
			if again, err := l.Verify(ctx); err != nil || again.FirstBroken != 70 || again.Missing != 9 {
				t.Fatalf("verify after a reopen: %+v %v", again, err)
			}
		})
	}
}

// The head is signed: one rewritten to hide a cut tail does not verify.
func TestForgedHeadIsReported(t *testing.T) {
	dir := t.TempDir()
	l, bb := open(t, dir)
	defer bb.Close()
	ctx := context.Background()
	for range 5 {
		l.Append(ctx, Entry{Actor: "admin", Action: "x"})
	}
	kv, err := bb.JS.KeyValue(ctx, HeadBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, headKey, []byte(`{"seq":3,"mac":"00","sig":"00"}`)); err != nil {
		t.Fatal(err)
	}
	v, err := l.Verify(ctx)
	if err != nil || v.OK || !strings.Contains(v.Reason, "signed head does not verify") {
		t.Fatalf("verify with a forged head: %+v %v", v, err)
	}
	// Deleting it is no better.
	kv.Purge(ctx, headKey)
	if v, err := l.Verify(ctx); err != nil || v.OK || !strings.Contains(v.Reason, "signed head is missing") {
		t.Fatalf("verify without a head: %+v %v", v, err)
	}
}

// A trail from before signed heads gets one at its next open, noted in
// the trail, and verifies.
func TestTrailWithoutHeadIsSigned(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bb, err := backbone.Open(ctx, backbone.Options{DataDir: filepath.Join(dir, "data"), Name: "test", SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, bb.JS, Options{KeyPath: filepath.Join(dir, "secrets", "audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.Append(ctx, Entry{Actor: "admin", Action: "x"})
	}
	// As an older daemon left it: no head bucket at all.
	if err := bb.JS.DeleteKeyValue(ctx, HeadBucket); err != nil {
		t.Fatal(err)
	}
	bb.Close()
	l, bb = open(t, dir)
	defer bb.Close()
	if d := l.Damage(); d != "" {
		t.Fatalf("Damage() = %q", d)
	}
	v, err := l.Verify(ctx)
	if err != nil || !v.OK || v.Entries != 4 || v.Head != 4 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if notes, _ := l.List(ctx, Filter{Action: HeadCreatedAction}); len(notes) != 1 {
		t.Fatalf("%d %s entries", len(notes), HeadCreatedAction)
	}
}
