// Package backbonetest starts a real embedded backbone in a temporary
// directory for tests.
package backbonetest

import (
	"context"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
)

// Start opens an embedded backbone in t.TempDir() and closes it when the
// test ends. sync is "always" or an interval such as "1s".
func Start(tb testing.TB, sync string) *backbone.Backbone {
	tb.Helper()
	o := backbone.Options{DataDir: tb.TempDir(), Name: "test", SyncInterval: time.Second}
	if sync == "always" {
		o.SyncAlways = true
	} else if d, err := time.ParseDuration(sync); err == nil {
		o.SyncInterval = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := backbone.Open(ctx, o)
	if err != nil {
		tb.Fatalf("start backbone: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}
