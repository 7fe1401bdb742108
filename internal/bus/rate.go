package bus

import (
	"sync"
	"time"
)

// rate counts the events published here per minute, for the last hour.
type rate struct {
	mu     sync.Mutex
	minute int64 // the minute (Unix time / 60) of counts[minute%60]
	counts [60]int64
}

// advance moves the ring to minute m, zeroing the minutes passed. The
// caller holds r.mu.
func (r *rate) advance(m int64) {
	if m <= r.minute {
		return
	}
	for k := r.minute + 1; k <= m && k <= r.minute+60; k++ {
		r.counts[k%60] = 0
	}
	r.minute = m
}

func (r *rate) add(now time.Time, n int) {
	m := now.Unix() / 60
	r.mu.Lock()
	r.advance(m)
	r.counts[m%60] += int64(n)
	r.mu.Unlock()
}

// last returns the counts of the last k minutes (k ≤ 60), oldest first;
// the last one is the minute in progress.
func (r *rate) last(now time.Time, k int) []int64 {
	k = min(max(k, 1), 60)
	m := now.Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(m)
	out := make([]int64, k)
	for i := range k {
		out[i] = r.counts[(m-int64(k-1-i))%60]
	}
	return out
}

// PerMinute returns how many events this node published in each of the
// last k minutes (at most 60), oldest first, the current minute last.
func (b *Bus) PerMinute(k int) []int64 { return b.rate.last(time.Now(), k) }
