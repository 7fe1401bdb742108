package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

func open(t testing.TB) *Store {
	t.Helper()
	b := backbonetest.Start(t, "1s")
	s, err := Open(context.Background(), b.JS, Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSemantics(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Get(ctx, "app", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	r1, err := s.Put(ctx, "app", "a", []byte(`{"n":1}`))
	if err != nil || r1 == 0 {
		t.Fatalf("put: %d %v", r1, err)
	}
	e, err := s.Get(ctx, "app", "a")
	if err != nil || string(e.Value) != `{"n":1}` || e.Revision != r1 {
		t.Fatalf("get: %+v %v", e, err)
	}
	if _, err := s.Create(ctx, "app", "a", []byte(`1`)); !errors.Is(err, ErrExists) {
		t.Fatalf("create existing: %v", err)
	}
	if _, err := s.Update(ctx, "app", "a", []byte(`2`), r1+100); !errors.Is(err, ErrConflict) {
		t.Fatalf("update stale rev: %v", err)
	}
	r2, err := s.Update(ctx, "app", "a", []byte(`2`), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: %d %v", r2, err)
	}
	if err := s.Delete(ctx, "app", "a", r1); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete stale rev: %v", err)
	}
	if err := s.Delete(ctx, "app", "a", r2); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.Get(ctx, "app", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.Delete(ctx, "app", "a", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete deleted: %v", err)
	}
	if _, err := s.Create(ctx, "app", "a", []byte(`3`)); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	// Namespaces are separate.
	if _, err := s.Get(ctx, "other", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("namespace leak: %v", err)
	}
}

func TestValidation(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, c := range []struct {
		ns, key, val, field string
	}{
		{"Bad", "k", `1`, "namespace"},
		{"a.b", "k", `1`, "namespace"},
		{"", "k", `1`, "namespace"},
		{"ok", "", `1`, "key"},
		{"ok", "a..b", `1`, "key"},
		{"ok", ".a", `1`, "key"},
		{"ok", "a b", `1`, "key"},
		{"ok", "a*", `1`, "key"},
		{"ok", strings.Repeat("k", 513), `1`, "key"},
		{"ok", "k", `{nope`, "value"},
	} {
		_, err := s.Put(ctx, c.ns, c.key, []byte(c.val))
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != c.field {
			t.Errorf("put %q/%q %q: %v, want invalid %s", c.ns, c.key, c.val, err, c.field)
		}
	}
	big := []byte(`"` + strings.Repeat("x", MaxValueSize) + `"`)
	if _, err := s.Put(ctx, "ok", "k", big); !errors.As(err, new(*TooLargeError)) {
		t.Fatalf("big value: %v", err)
	}
	if _, err := s.Get(ctx, "ok", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a rejected write was stored")
	}
	max := []byte(`"` + strings.Repeat("x", MaxValueSize-2) + `"`)
	if _, err := s.Put(ctx, "ok", "k", max); err != nil {
		t.Fatalf("a value of exactly 1 MiB: %v", err)
	}
}

// N goroutines increment one counter by compare-and-set; the result is exact.
func TestCASUnderContention(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "c", "counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				e, err := s.Get(ctx, "c", "counter")
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := strconv.Atoi(string(e.Value))
				_, err = s.Update(ctx, "c", "counter", []byte(strconv.Itoa(n+1)), e.Revision)
				if errors.Is(err, ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				i++
			}
		}()
	}
	wg.Wait()
	e, _ := s.Get(ctx, "c", "counter")
	if string(e.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s, want %d", e.Value, workers*each)
	}
}

func TestListPaginates(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		s.Put(ctx, "ns", fmt.Sprintf("item/%02d", i), []byte(strconv.Itoa(i)))
	}
	s.Put(ctx, "ns", "other", []byte("1"))
	s.Put(ctx, "ns2", "item/99", []byte("1"))
	var got []string
	cursor := ""
	pages := 0
	for {
		es, next, err := s.List(ctx, "ns", "item/", 10, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range es {
			got = append(got, e.Key)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || len(got) != 25 || got[0] != "item/00" || got[24] != "item/24" {
		t.Fatalf("pages=%d keys=%v", pages, got)
	}
	s.Delete(ctx, "ns", "item/00", 0)
	es, _, _ := s.List(ctx, "ns", "", 100, "")
	if len(es) != 25 || es[0].Key != "item/01" {
		t.Fatalf("after delete: %d entries, first %q", len(es), es[0].Key)
	}
}

func TestWatch(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Put(ctx, "w", "cfg/gone", []byte(`1`))
	s.Delete(ctx, "w", "cfg/gone", 0)
	s.Put(ctx, "w", "cfg/a", []byte(`1`))
	s.Put(ctx, "w", "x", []byte(`1`))
	ch, err := s.Watch(ctx, "w", "cfg/", true)
	if err != nil {
		t.Fatal(err)
	}
	next := func() Change {
		select {
		case c := <-ch:
			return c
		case <-ctx.Done():
			t.Fatal("watch delivered nothing")
		}
		return Change{}
	}
	if c := next(); c.Op != OpPut || c.Key != "cfg/a" {
		t.Fatalf("current value: %+v", c)
	}
	s.Put(ctx, "w", "x", []byte(`2`)) // not under the prefix
	s.Put(ctx, "w", "cfg/b", []byte(`{"v":2}`))
	if c := next(); c.Op != OpPut || c.Key != "cfg/b" || string(c.Value) != `{"v":2}` {
		t.Fatalf("live put: %+v", c)
	}
	s.Delete(ctx, "w", "cfg/a", 0)
	if c := next(); c.Op != OpDelete || c.Key != "cfg/a" {
		t.Fatalf("live delete: %+v", c)
	}
}

// Reopening the bucket (as after a restart) loads what was written.
func TestReopenLoadsContents(t *testing.T) {
	b := backbonetest.Start(t, "1s")
	ctx := context.Background()
	s1, err := Open(ctx, b.JS, Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(map[string]int{"x": 1})
	rev, _ := s1.Put(ctx, "p", "k", v)
	s1.Close()
	s2, err := Open(ctx, b.JS, Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e, err := s2.Get(ctx, "p", "k")
	if err != nil || e.Revision != rev || string(e.Value) != string(v) {
		t.Fatalf("after reopen: %+v %v", e, err)
	}
}
