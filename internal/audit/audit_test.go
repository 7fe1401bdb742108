package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
)

// open starts an embedded backbone on dir and opens the audit log on it.
func open(t *testing.T, dir string) (*Log, *backbone.Backbone) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bb, err := backbone.Open(ctx, backbone.Options{DataDir: filepath.Join(dir, "data"), Name: "test", SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, bb.JS, Options{KeyPath: filepath.Join(dir, "secrets", "audit.key")})
	if err != nil {
		bb.Close()
		t.Fatal(err)
	}
	return l, bb
}

func TestAppendListVerify(t *testing.T) {
	dir := t.TempDir()
	l, bb := open(t, dir)
	defer bb.Close()
	ctx := context.Background()
	for i, a := range []string{"agent.spawn", "agent.kill", "state.delete"} {
		if _, err := l.Append(ctx, Entry{Actor: "admin", Action: a, Resource: fmt.Sprint("r", i),
			Detail: map[string]any{"api_key": "sk-abcdefghijklmnop", "note": "used oxs_abcdefghijkl", "n": 3, "list": []string{"a"}}}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := l.List(ctx, Filter{Action: "agent.*"})
	if err != nil || len(es) != 2 || es[0].Seq != 1 || es[1].Prev != es[0].MAC {
		t.Fatalf("list: %v %+v", err, es)
	}
	if es[0].Detail["api_key"] != "[redacted]" || es[0].Detail["note"] != "used [redacted]" {
		t.Fatalf("secrets not redacted: %+v", es[0].Detail)
	}
	if es, _ := l.List(ctx, Filter{After: 2}); len(es) != 1 || es[0].Action != "state.delete" {
		t.Fatalf("after: %+v", es)
	}
	v, err := l.Verify(ctx)
	if err != nil || !v.OK || v.Entries != 3 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "secrets", "audit.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	// The stream refuses deletes and purges.
	if err := l.stream.DeleteMsg(ctx, 2); err == nil {
		t.Fatal("an audit entry was deleted")
	}
	if err := l.stream.Purge(ctx); err == nil {
		t.Fatal("the audit stream was purged")
	}
}

// Many appenders, through two logs on one stream (as two daemons of a
// cluster would be), never fork the chain.
func TestConcurrentAppendersDoNotFork(t *testing.T) {
	dir := t.TempDir()
	l1, bb := open(t, dir)
	defer bb.Close()
	ctx := context.Background()
	l2, err := Open(ctx, bb.JS, Options{KeyPath: filepath.Join(dir, "secrets", "audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 16, 25
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := l1
			if g%2 == 1 {
				l = l2
			}
			for i := range each {
				if _, err := l.Append(ctx, Entry{Actor: fmt.Sprint("g", g), Action: "test.append", Resource: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	v, err := l1.Verify(ctx)
	if err != nil || !v.OK || v.Entries != goroutines*each {
		t.Fatalf("verify after concurrent appends: %+v %v", v, err)
	}
}

// Changing one stored entry on disk is found: verify names it.
func TestTamperIsDetected(t *testing.T) {
	dir := t.TempDir()
	l, bb := open(t, dir)
	ctx := context.Background()
	for i := range 10 {
		res := fmt.Sprintf("agent/%02d-ordinary", i)
		if i == 6 {
			res = "agent/06-victimxx"
		}
		if _, err := l.Append(ctx, Entry{Actor: "admin", Action: "agent.kill", Resource: res}); err != nil {
			t.Fatal(err)
		}
	}
	bb.Close()
	// Edit the stored bytes: same length, different content.
	changed := false
	filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".blk") || !strings.Contains(p, Stream) {
			return nil
		}
		b, _ := os.ReadFile(p)
		if i := bytes.Index(b, []byte("victimxx")); i >= 0 {
			copy(b[i:], "VICTIMXX")
			os.WriteFile(p, b, 0o600)
			changed = true
		}
		return nil
	})
	if !changed {
		t.Fatal("did not find the entry on disk")
	}
	l, bb = open(t, dir)
	defer bb.Close()
	v, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.FirstBroken != 7 {
		t.Fatalf("verify after tampering: %+v (want entry 7 named)", v)
	}
}

// The chain goes on across a restart of the daemon.
func TestChainSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l, bb := open(t, dir)
	ctx := context.Background()
	l.Append(ctx, Entry{Actor: "admin", Action: "a"})
	bb.Close()
	l, bb = open(t, dir)
	defer bb.Close()
	e, err := l.Append(ctx, Entry{Actor: "admin", Action: "b"})
	if err != nil || e.Seq != 2 {
		t.Fatalf("append after reopen: %+v %v", e, err)
	}
	if v, err := l.Verify(ctx); err != nil || !v.OK || v.Entries != 2 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// A daemon with another key (a cluster node without the cluster's key)
// refuses the trail instead of breaking it: nothing is appended, and the
// trail still verifies under the right key. Entries carry their node.
func TestOtherKeyIsRefused(t *testing.T) {
	dir := t.TempDir()
	l, bb := open(t, dir)
	defer bb.Close()
	ctx := context.Background()
	for _, node := range []string{"n1", "n2"} {
		ln, err := Open(ctx, bb.JS, Options{KeyPath: filepath.Join(dir, "secrets", "audit.key"), Node: node})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ln.Append(ctx, Entry{Actor: "admin", Action: "test.node", Resource: node}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := l.LastSeq(ctx)
	other := filepath.Join(t.TempDir(), "cluster.key")
	_, err := Open(ctx, bb.JS, Options{KeyPath: other, Node: "n3"})
	if !errors.Is(err, ErrOtherKey) || !strings.Contains(err.Error(), "cluster.key") {
		t.Fatalf("open with another key: %v, want ErrOtherKey naming the cluster key", err)
	}
	if after, _ := l.LastSeq(ctx); after != before {
		t.Fatalf("the refused daemon appended %d entries", after-before)
	}
	v, err := l.Verify(ctx)
	if err != nil || !v.OK {
		t.Fatalf("verify after the refusal: %+v %v", v, err)
	}
	es, _ := l.List(ctx, Filter{Action: "test.node"})
	if len(es) != 2 || es[0].Node != "n1" || es[1].Node != "n2" {
		t.Fatalf("entries' nodes: %+v", es)
	}
}
