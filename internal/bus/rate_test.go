package bus

import (
	"slices"
	"testing"
	"time"
)

func TestRateCountsPerMinute(t *testing.T) {
	var r rate
	t0 := time.Date(2026, 11, 26, 10, 0, 5, 0, time.UTC)
	r.add(t0, 3)
	r.add(t0.Add(30*time.Second), 2)
	r.add(t0.Add(time.Minute), 1)
	if got := r.last(t0.Add(2*time.Minute), 4); !slices.Equal(got, []int64{0, 5, 1, 0}) {
		t.Fatalf("%v", got)
	}
	// An hour later the old minutes are gone, not wrapped around.
	if got := r.last(t0.Add(61*time.Minute), 60); slices.Max(got) != 0 {
		t.Fatalf("stale counts after an hour: %v", got)
	}
	r.add(t0.Add(3*time.Hour), 7)
	if got := r.last(t0.Add(3*time.Hour), 2); !slices.Equal(got, []int64{0, 7}) {
		t.Fatalf("%v", got)
	}
}
