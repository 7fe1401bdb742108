package backbone_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/store"
)

// Three embedded servers form one cluster: a bucket created with three
// replicas on one is written on another and read on the third.
func TestEmbeddedClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	bbs := backbonetest.Cluster(t, 3, []byte("k1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stores := make([]*store.Store, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, bb := range bbs { // all at once, as three daemons boot
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = store.Open(ctx, bb.JS, store.Options{Bucket: "state", Replicas: bb.Replicas})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("n%d: open store: %v", i+1, err)
		}
		defer stores[i].Close()
	}
	if _, err := stores[1].Put(ctx, "ns", "k", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := stores[2].Get(ctx, "ns", "k")
		if err == nil && string(e.Value) == `{"v":2}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 never saw n2's write: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	kv, err := bbs[0].JS.KeyValue(ctx, "state")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := kv.Status(ctx)
	if info := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); info.Config.Replicas != 3 || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("bucket replicas = %d (%d peers), want 3", info.Config.Replicas, len(info.Cluster.Replicas))
	}
	for i, bb := range bbs {
		if bb.Routes() < 2 {
			t.Errorf("n%d has %d routes, want 2", i+1, bb.Routes())
		}
	}
}

// A node with another key is refused at the route, and its log says why.
func TestClusterRefusesAnotherKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clustered servers")
	}
	addrs := backbonetest.FreePorts(t, 2)
	var logA, logB syncBuf
	open := func(name, key, listen, peer string, log *syncBuf) (*backbone.Backbone, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return backbone.Open(ctx, backbone.Options{DataDir: t.TempDir(), Name: name, Logger: slog.New(slog.NewTextHandler(log, nil)),
			Cluster: &backbone.Cluster{Listen: listen, Peers: []string{peer}, RoutePassword: key, ClientPassword: key}})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	for _, n := range []struct {
		name, key, listen, peer string
		log                     *syncBuf
	}{{"a", "right", addrs[0], addrs[1], &logA}, {"b", "wrong", addrs[1], addrs[0], &logB}} {
		go func() {
			defer wg.Done()
			bb, err := open(n.name, n.key, n.listen, n.peer, n.log)
			if err == nil {
				bb.Close()
				t.Errorf("%s booted a cluster with a node of another key", n.name)
			}
		}()
	}
	wg.Wait()
	all := logA.String() + logB.String()
	if !strings.Contains(all, "secrets/cluster.key differ") {
		t.Fatalf("no log line says the keys differ:\n%s", all)
	}
	if strings.Contains(all, "right") || strings.Contains(all, "wrong") {
		t.Fatalf("a route password is in the log:\n%s", all)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
