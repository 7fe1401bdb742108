package backup

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

// A stream's snapshot restores into another server with the same
// messages at the same sequences.
func TestSnapshotRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := backbonetest.Start(t, "1s")
	kv, err := src.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "things"})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b", "a", "c"} {
		kv.Put(ctx, k, []byte{byte('0' + i)})
	}
	kv.Delete(ctx, "c")
	var buf bytes.Buffer
	s, err := Snapshot(ctx, src.Conn, "KV_things", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if s.LastSeq != 5 || buf.Len() == 0 {
		t.Fatalf("%+v, %d bytes", s, buf.Len())
	}
	dst := backbonetest.Start(t, "1s")
	if err := Restore(ctx, dst.Conn, s, &buf); err != nil {
		t.Fatal(err)
	}
	kv2, err := dst.JS.KeyValue(ctx, "things")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "a")
	if err != nil || string(e.Value()) != "2" || e.Revision() != 3 {
		t.Fatalf("%v %v", e, err)
	}
	if _, err := kv2.Get(ctx, "c"); err == nil {
		t.Fatal("a deleted key came back")
	}
}
