package budget

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/supervisor"
)

// Thirty calls at once on three nodes under a limit of one call: exactly
// one is admitted. After it is spent and released, none more.
func TestOneCallLimitUnderConcurrency(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	c := newClock()
	nodes := []*Service{open(t, bb.JS, "n1", c), open(t, bb.JS, "n2", c), open(t, bb.JS, "n3", c)}
	ctx := context.Background()
	if _, err := nodes[0].Set(ctx, Budget{Name: Global, Window: "1h", Limits: Limits{Calls: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes { // every node knows the budget
		for {
			if _, err := n.Get(Global); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	var admitted atomic.Int32
	var releases sync.Map
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := labelled()
			rec.ID = fmt.Sprint("a", i)
			release, err := nodes[i%3].Reserve(ctx, rec, supervisor.Usage{}, Usage{Calls: 1, Tokens: 100})
			if err == nil {
				admitted.Add(1)
				releases.Store(i, release)
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n != 1 {
		t.Fatalf("%d of 30 concurrent calls admitted under a limit of 1", n)
	}
	releases.Range(func(k, v any) bool {
		n := nodes[k.(int)%3]
		n.Spend(labelled(), calls(1), calls(1))
		n.Sync(ctx)
		v.(func())()
		return true
	})
	for _, n := range nodes {
		if err := check(n, labelled()); err == nil {
			t.Fatalf("%s admitted a call after the one call was used", n.node)
		}
	}
}

// A property over random mixes: concurrent reservations of random sizes
// under a token limit are admitted only while what is used and reserved is
// under the limit, so the overshoot is at most the calls in flight beyond
// their estimates, never a pile of calls that each saw room.
func TestTokenReservationsProperty(t *testing.T) {
	bb := backbonetest.Start(t, "1s")
	c := newClock()
	a, b := open(t, bb.JS, "n1", c), open(t, bb.JS, "n2", c)
	ctx := context.Background()
	for round := range 5 {
		name := fmt.Sprintf("label:round=%d", round)
		limit := int64(1000 + rand.IntN(5000))
		if _, err := a.Set(ctx, Budget{Name: name, Window: "1h", Limits: Limits{Tokens: limit}}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := b.Get(name); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		rec := labelled("round", fmt.Sprint(round))
		var mu sync.Mutex
		var reserved int64
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []*Service{a, b}[i%2]
				est := int64(100 + rand.IntN(900))
				if _, err := s.Reserve(ctx, rec, supervisor.Usage{}, Usage{Calls: 1, Tokens: est}); err == nil {
					mu.Lock()
					reserved += est
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// Each admitted call saw the others' reservations: all of them but
		// the last fit under the limit.
		if reserved >= limit+1000 || reserved == 0 {
			t.Fatalf("round %d: %d tokens reserved under a limit of %d", round, reserved, limit)
		}
	}
}
