package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/scheduler"
)

func benchServer(b *testing.B, sync string) *httptest.Server {
	srv, _ := daemonAPI(b, sync, 15*time.Second)
	return srv
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// request sends one authenticated request and returns its status.
func request(hc *http.Client, method, url string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// hammer runs op from 16 concurrent clients (8 per core) and reports ops/s.
func hammer(b *testing.B, unit string, op func(i int64) (int, error)) {
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if status, err := op(n.Add(1)); err != nil || status != 200 {
				b.Errorf("status %d: %v", status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkHTTPStatePut measures PUT /api/v1/state over real HTTP from 16
// concurrent clients; each put also publishes a state.put event.
//
//	go test -run '^$' -bench HTTPState ./internal/api
func BenchmarkHTTPStatePut(b *testing.B) {
	for _, syncMode := range []string{"1s", "always"} {
		b.Run("sync="+syncMode, func(b *testing.B) {
			srv := benchServer(b, syncMode)
			hc := benchClient()
			val := []byte(`{"name":"worker","count":12345,"tags":["a","b","c"]}`)
			hammer(b, "puts/s", func(i int64) (int, error) {
				return request(hc, "PUT", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i%1000), val)
			})
		})
	}
}

// BenchmarkHTTPStateGet measures GET /api/v1/state over real HTTP.
func BenchmarkHTTPStateGet(b *testing.B) {
	srv := benchServer(b, "1s")
	hc := benchClient()
	for i := 0; i < 1000; i++ {
		if _, err := request(hc, "PUT", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i), []byte(`{"v":1}`)); err != nil {
			b.Fatal(err)
		}
	}
	hammer(b, "gets/s", func(i int64) (int, error) {
		return request(hc, "GET", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i%1000), nil)
	})
}

// BenchmarkSpawnThousandHTTP is the daemon's side of 1,000 agents spawned
// over HTTP by 8 clients, in one process so that it can be profiled:
//
//	go test -run '^$' -bench SpawnThousandHTTP -benchtime 1x -cpuprofile cpu.prof ./internal/api
func BenchmarkSpawnThousandHTTP(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		srv, ev := daemonAPIWith(b, "1s", time.Minute, scheduler.Limits{MaxRunning: 2000, MaxRunningLLM: 1})
		sub, err := ev.Subscribe(context.Background(), bus.Filter{Types: []string{"agent.started"}}, bus.SubscribeOptions{Buffer: 2 * n})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					req, _ := http.NewRequest("POST", srv.URL+"/api/v1/agents", strings.NewReader(`{"command": "sleep", "args": ["3600"]}`))
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil || resp.StatusCode != 201 {
						b.Errorf("spawn: %v %v", err, resp)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		for range n {
			<-sub.C
		}
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "ms-all-running")
		b.StopTimer()
		wg.Wait()
		sub.Close()
		b.StartTimer()
	}
}
