package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
)

func benchBus(b *testing.B, sync string) *Bus {
	bb := backbonetest.Start(b, sync)
	bus, err := Open(context.Background(), bb.JS, Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 4 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bus.Close)
	return bus
}

var benchData = json.RawMessage(`{"tool":"write_file","duration_ms":3,"error":false}`)

// BenchmarkPublish measures durable publishes: each returns once JetStream
// has stored the event. Many goroutines publish at once, as agents do.
//
//	go test -run '^$' -bench Publish ./internal/bus
func BenchmarkPublish(b *testing.B) {
	for _, syncMode := range []string{"1s", "always"} {
		b.Run("sync="+syncMode, func(b *testing.B) {
			bus := benchBus(b, syncMode)
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := bus.Publish(ctx, Event{Type: "tool.finished", AgentID: "a1", Data: benchData}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkPublishBatch measures durable publishes of batches of 100 (as
// POST /api/v1/events takes them), from 8 publishers at once.
func BenchmarkPublishBatch(b *testing.B) {
	for _, syncMode := range []string{"1s", "always"} {
		b.Run("sync="+syncMode, func(b *testing.B) {
			bus := benchBus(b, syncMode)
			const size = 100
			batch := make([]Event, size)
			for i := range batch {
				batch[i] = Event{Type: "tool.finished", AgentID: "a1", Data: benchData}
			}
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := bus.PublishBatch(ctx, batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDeliverLatency publishes at a steady 10,000 events/s and
// measures, for every subscriber, the time from the start of Publish to
// the event arriving on the subscription, reporting p50 and p99.
//
//	go test -run '^$' -bench DeliverLatency -benchtime 20000x ./internal/bus
//
// The test binary collects garbage as the daemon does (kernel.GCPercent).
func BenchmarkDeliverLatency(b *testing.B) {
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	for _, syncMode := range []string{"1s", "always"} {
		for _, subs := range []int{1, 10} {
			b.Run(fmt.Sprintf("sync=%s/subscribers=%d", syncMode, subs), func(b *testing.B) {
				bus := benchBus(b, syncMode)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				sent := make([]atomic.Int64, b.N+1) // publish start, unix ns
				var mu sync.Mutex
				var lat []time.Duration
				var wg sync.WaitGroup
				for i := 0; i < subs; i++ {
					s, err := bus.Subscribe(ctx, Filter{Types: []string{"bench.*"}}, SubscribeOptions{FromNow: true})
					if err != nil {
						b.Fatal(err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						local := make([]time.Duration, 0, b.N)
						for n := 0; n < b.N; n++ {
							ev, ok := <-s.C
							if !ok {
								break
							}
							var d struct{ I int }
							json.Unmarshal(ev.Data, &d)
							local = append(local, time.Duration(time.Now().UnixNano()-sent[d.I].Load()))
						}
						mu.Lock()
						lat = append(lat, local...)
						mu.Unlock()
					}()
				}
				const rate = 10000
				interval := time.Second / rate
				b.ResetTimer()
				start := time.Now()
				for i := 1; i <= b.N; i++ {
					if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
						time.Sleep(wait)
					}
					sent[i].Store(time.Now().UnixNano())
					if _, err := bus.Publish(ctx, Event{Type: "bench.tick", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
						b.Fatal(err)
					}
				}
				wg.Wait()
				b.StopTimer()
				if len(lat) != b.N*subs {
					b.Fatalf("delivered %d of %d", len(lat), b.N*subs)
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}
