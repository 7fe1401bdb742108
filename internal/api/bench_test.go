package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func benchServer(b *testing.B, sync string) *httptest.Server {
	srv, _ := daemonAPI(b, sync, 15*time.Second)
	return srv
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
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
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i%1000), bytes.NewReader(val))
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// BenchmarkHTTPStateGet measures GET /api/v1/state over real HTTP.
func BenchmarkHTTPStateGet(b *testing.B) {
	srv := benchServer(b, "1s")
	hc := benchClient()
	for i := 0; i < 1000; i++ {
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i), bytes.NewReader([]byte(`{"v":1}`)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/state/bench/key-%d", srv.URL, i%1000), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
