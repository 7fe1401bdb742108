package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

func benchStore(b *testing.B, sync string) *Store {
	bb := backbonetest.Start(b, sync)
	s, err := Open(context.Background(), bb.JS, Options{Bucket: "state"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// BenchmarkPut measures acknowledged (durable per store.sync) puts, from
// concurrent writers as a busy daemon has them.
//
//	go test -run '^$' -bench 'Put|Get' ./internal/store
func BenchmarkPut(b *testing.B) {
	for _, sync := range []string{"1s", "always"} {
		b.Run("sync="+sync, func(b *testing.B) {
			s := benchStore(b, sync)
			val := []byte(`{"name":"worker","count":12345,"tags":["a","b","c"]}`)
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					if _, err := s.Put(ctx, "bench", fmt.Sprintf("key/%d", i%1000), val); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// BenchmarkGet measures reads, served from the watch-fed cache.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b, "1s")
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		s.Put(ctx, "bench", fmt.Sprintf("key/%d", i), []byte(`{"v":1}`))
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.Get(ctx, "bench", fmt.Sprintf("key/%d", i%1000)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
