package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
)

// BenchmarkAppend is one audited action: the entry, chained and stored
// with its expected last sequence, and the signed head moved to it.
func BenchmarkAppend(b *testing.B) {
	dir := b.TempDir()
	l, bb := openTB(b, dir)
	defer bb.Close()
	ctx := context.Background()
	e := Entry{Actor: "admin", Action: "agent.spawn", Resource: "agent/0193e2a4-0000-7000-8000-000000000000", Detail: map[string]any{"kind": "process"}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// openTB is open for benchmarks, with the daemon's default sync (1s).
func openTB(b *testing.B, dir string) (*Log, *backbone.Backbone) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bb, err := backbone.Open(ctx, backbone.Options{DataDir: filepath.Join(dir, "data"), Name: "test", SyncInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(ctx, bb.JS, Options{KeyPath: filepath.Join(dir, "secrets", "audit.key")})
	if err != nil {
		bb.Close()
		b.Fatal(err)
	}
	return l, bb
}
