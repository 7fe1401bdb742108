package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/store"
)

func benchServer(b *testing.B, sync string) *httptest.Server {
	bb := backbonetest.Start(b, sync)
	ctx := context.Background()
	st, err := store.Open(ctx, bb.JS, store.Options{Bucket: "state"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	bs, err := bus.Open(ctx, bb.JS, bus.Options{Node: "n1", MaxAge: time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bs.Close)
	s := New(Options{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authenticate: func(tok string) bool { return tok == token },
		Readiness:    func() Readiness { return Readiness{Ready: true} },
		System:       func() System { return System{} },
	})
	s.Attach(&Services{State: st, Bus: bs})
	srv := httptest.NewServer(s)
	b.Cleanup(srv.Close)
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
