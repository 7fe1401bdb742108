package backbone_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/store"
)

// natsServer starts a standalone NATS server on a random port.
func natsServer(t *testing.T, jetstream bool) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: jetstream,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// The same store and bus code runs against an external server by URL.
func TestExternalURL(t *testing.T) {
	ns := natsServer(t, true)
	ctx := context.Background()
	bb, err := backbone.Open(ctx, backbone.Options{URL: ns.ClientURL(), Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	if bb.Embedded() {
		t.Fatal("connected by URL but reports embedded")
	}
	st, err := store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rev, err := st.Put(ctx, "ns", "k", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Open(ctx, bb.JS, bus.Options{Node: "ext", MaxAge: time.Hour, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ev, err := b.Publish(ctx, bus.Event{Type: "custom.ping"})
	if err != nil || ev.Seq != 1 {
		t.Fatalf("publish: %+v %v", ev, err)
	}
	// The data is in the external server: a second client sees it.
	bb2, err := backbone.Open(ctx, backbone.Options{URL: ns.ClientURL(), Name: "ext2"})
	if err != nil {
		t.Fatal(err)
	}
	defer bb2.Close()
	st2, err := store.Open(ctx, bb2.JS, store.Options{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if e, err := st2.Get(ctx, "ns", "k"); err != nil || e.Revision != rev {
		t.Fatalf("second client: %+v %v", e, err)
	}
}

func TestExternalWithoutJetStream(t *testing.T) {
	ns := natsServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := backbone.Open(ctx, backbone.Options{URL: ns.ClientURL(), Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("got %v, want an error saying JetStream is not enabled", err)
	}
}

func TestUnreachableURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := backbone.Open(ctx, backbone.Options{URL: "nats://user:secret@127.0.0.1:1", Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("got %v, want a connect error naming the address", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the password leaked into the error: %v", err)
	}
}

// Data written with the embedded server survives closing and reopening it
// on the same directory.
func TestEmbeddedPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *backbone.Backbone {
		bb, err := backbone.Open(ctx, backbone.Options{DataDir: dir, Name: "p", SyncAlways: true})
		if err != nil {
			t.Fatal(err)
		}
		return bb
	}
	bb := open()
	st, _ := store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	rev, err := st.Put(ctx, "ns", "k", []byte(`"v"`))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	bb.Close()

	bb = open()
	defer bb.Close()
	st, _ = store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	defer st.Close()
	if e, err := st.Get(ctx, "ns", "k"); err != nil || e.Revision != rev || string(e.Value) != `"v"` {
		t.Fatalf("after reopen: %+v %v", e, err)
	}
}
