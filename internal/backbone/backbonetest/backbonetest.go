// Package backbonetest starts a real embedded backbone in a temporary
// directory for tests.
package backbonetest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
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

// FreePorts returns n loopback addresses whose ports were free a moment
// ago, for route listeners that must be named in each other's config
// before any of them starts (a NATS route cannot be handed a listener).
func FreePorts(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

// Cluster opens n embedded backbones in one process, forming one NATS
// cluster with clustered JetStream, each in its own temporary directory,
// with routes authenticated by key. They are closed when the test ends.
func Cluster(tb testing.TB, n int, key []byte) []*backbone.Backbone {
	tb.Helper()
	addrs := FreePorts(tb, n)
	bbs := make([]*backbone.Backbone, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		peers := slices.Delete(slices.Clone(addrs), i, i+1)
		o := backbone.Options{DataDir: tb.TempDir(), Name: fmt.Sprintf("n%d", i+1), SyncInterval: time.Second,
			Replicas: min(n, 3), Cluster: &backbone.Cluster{Listen: addrs[i], Peers: peers,
				RoutePassword: fmt.Sprintf("%x-route", key), ClientPassword: fmt.Sprintf("%x-client", key)}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			bbs[i], errs[i] = backbone.Open(ctx, o)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("start clustered backbone n%d: %v", i+1, err)
		}
		tb.Cleanup(func() { bbs[i].Close() })
	}
	return bbs
}
