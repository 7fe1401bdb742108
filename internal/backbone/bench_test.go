package backbone_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/store"
)

// BenchmarkReplicas compares state puts and gets and event publishes on
// one replica and on three, on the same three-node embedded cluster, from
// the same node (n1), so that the two differ only by replication.
func BenchmarkReplicas(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a three-node cluster")
	}
	bbs := backbonetest.Cluster(b, 3, []byte("bench"))
	ctx := context.Background()
	for _, r := range []int{1, 3} {
		st, err := store.Open(ctx, bbs[0].JS, store.Options{Bucket: fmt.Sprintf("bench_r%d", r), Replicas: r})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		b.Run(fmt.Sprintf("state-put/R%d", r), func(b *testing.B) {
			var lat []time.Duration
			i := 0
			for b.Loop() {
				t0 := time.Now()
				if _, err := st.Put(ctx, "bench", fmt.Sprint("k", i%1000), []byte(`{"v":1}`)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				i++
			}
			report(b, lat)
		})
		b.Run(fmt.Sprintf("state-get/R%d", r), func(b *testing.B) {
			var lat []time.Duration
			i := 0
			for b.Loop() {
				t0 := time.Now()
				if _, err := st.Get(ctx, "bench", fmt.Sprint("k", i%1000)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				i++
			}
			report(b, lat)
		})
	}
	for _, r := range []int{1, 3} {
		// The event log is one stream: opened again with three replicas,
		// it is scaled up.
		ev, err := bus.Open(ctx, bbs[0].JS, bus.Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 256 << 20, Replicas: r})
		if err != nil {
			b.Fatal(err)
		}
		awaitReplicas(b, bbs[0].JS, r)
		b.Run(fmt.Sprintf("event-publish/R%d", r), func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := ev.Publish(ctx, bus.Event{Type: "bench.tick"}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			report(b, lat)
		})
		ev.Close()
	}
}

// awaitReplicas waits until the event log has r current replicas.
func awaitReplicas(b *testing.B, js jetstream.JetStream, r int) {
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := js.Stream(ctx, bus.Stream)
		if err != nil {
			b.Fatal(err)
		}
		info, err := s.Info(ctx)
		current := 0
		if err == nil && info.Cluster != nil {
			for _, p := range info.Cluster.Replicas {
				if p.Current {
					current++
				}
			}
		}
		if err == nil && info.Config.Replicas == r && current == r-1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the event log has not %d current replicas: %+v %v", r, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Nanoseconds())/1000, "p99-µs")
}
