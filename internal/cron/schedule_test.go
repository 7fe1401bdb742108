package cron

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, expr, zone string) Schedule {
	t.Helper()
	s, err := Parse(expr, zone)
	if err != nil {
		t.Fatalf("%q: %v", expr, err)
	}
	return s
}

func at(t *testing.T, zone, value string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Skipf("no time zone data for %s", zone)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", value, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Daily 02:30 in Berlin across the spring-forward night (02:00 → 03:00 on
// 2026-03-29): that day has no 02:30, so the job fires the next day; across
// the fall-back night (03:00 → 02:00 on 2026-10-25) it fires once.
func TestDSTInANamedZone(t *testing.T) {
	s := mustParse(t, "30 2 * * *", "Europe/Berlin")
	got := s.Next(at(t, "Europe/Berlin", "2026-03-28 12:00"))
	if want := at(t, "Europe/Berlin", "2026-03-30 02:30"); !got.Equal(want) {
		t.Fatalf("spring forward: %s, want %s", got, want)
	}
	first := s.Next(at(t, "Europe/Berlin", "2026-10-24 12:00"))
	second := s.Next(first)
	if first.Day() != 25 || second.Day() != 26 || second.Sub(first) != 25*time.Hour {
		t.Fatalf("fall back: %s then %s", first, second)
	}
	// A daily 02:30 job that fired at 02:30 CEST does not fire again at
	// 02:30 CET, whenever it is asked (after a restart at 02:10 CET too).
	if n := s.Next(first.Add(40 * time.Minute)); !n.Equal(second) {
		t.Fatalf("fall back, asked at 02:10 CET: %s, want %s", n, second)
	}
	// An hourly job follows real time when clocks go back: 02:00 CEST,
	// 02:00 CET, 03:00 CET, an hour apart each; so does a quarter-hourly one.
	h0 := mustParse(t, "0 * * * *", "Europe/Berlin")
	c := h0.Next(at(t, "Europe/Berlin", "2026-10-25 01:30"))
	d := h0.Next(c)
	e := h0.Next(d)
	if c.Hour() != 2 || d.Hour() != 2 || e.Hour() != 3 || d.Sub(c) != time.Hour || e.Sub(d) != time.Hour {
		t.Fatalf("hourly across fall back: %s, %s, %s", c, d, e)
	}
	q := mustParse(t, "15,45 * * * *", "Europe/Berlin")
	n, count := at(t, "Europe/Berlin", "2026-10-25 01:50"), 0
	for n = q.Next(n); n.Before(at(t, "Europe/Berlin", "2026-10-25 03:50")); n = q.Next(n) {
		count++
	}
	if count != 6 { // 02:15, 02:45 twice, 03:15, 03:45 in three real hours
		t.Fatalf("quarter-hourly across fall back: %d firings, want 6", count)
	}
	// Many firings in the repeated hour: all of them once, in the first.
	ny := mustParse(t, "*/10 1 * * *", "America/New_York")
	var fired []string
	for n := ny.Next(at(t, "America/New_York", "2025-11-02 00:30")); n.Before(at(t, "America/New_York", "2025-11-02 04:00")); n = ny.Next(n) {
		fired = append(fired, n.Format("15:04 MST"))
	}
	if len(fired) != 6 || fired[0] != "01:00 EDT" || fired[5] != "01:50 EDT" {
		t.Fatalf("*/10 1 * * * across fall back in New York: %v", fired)
	}
	// An hourly job goes from 01:00 straight to 03:00 (02:00 does not
	// exist that night), 30 real minutes after 01:30, then on the hour.
	h := mustParse(t, "0 * * * *", "Europe/Berlin")
	a := h.Next(at(t, "Europe/Berlin", "2026-03-29 01:30"))
	b := h.Next(a)
	if a.Hour() != 3 || a.Sub(at(t, "Europe/Berlin", "2026-03-29 01:30")) != 30*time.Minute || b.Sub(a) != time.Hour {
		t.Fatalf("hourly across spring forward: %s then %s", a, b)
	}
}

func TestEveryAndDescriptors(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 7, 0, time.UTC)
	// @every fires at the multiples of its interval, the same on every node.
	if got := mustParse(t, "@every 30s", "UTC").Next(start); !got.Equal(time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)) {
		t.Fatalf("@every 30s after 10:00:07: %s", got)
	}
	if got := mustParse(t, "@every 30s", "UTC").Next(start.Add(23 * time.Second)); !got.Equal(time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC)) {
		t.Fatalf("@every 30s after 10:00:30: %s", got)
	}
	if got := mustParse(t, "@hourly", "UTC").Next(start); !got.Equal(time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("@hourly: %s", got)
	}
	if got := mustParse(t, "@daily", "UTC").Next(start); !got.Equal(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("@daily: %s", got)
	}
	if got := mustParse(t, "*/15 9-17 * * 1-5", "UTC").Next(start); !got.Equal(time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)) {
		t.Fatalf("*/15 9-17 * * 1-5: %s", got)
	}
}

func TestBadExpressionsNameThePosition(t *testing.T) {
	for _, c := range []struct {
		expr, field string
		pos         int
	}{
		{"61 * * * *", "minute", 1},
		{"0 25 * * *", "hour", 3},
		{"0 0 32 * *", "day of month", 5},
		{"0 0 1  13 *", "month", 8},
		{"0 0 * * mon-xyz", "day of week", 9},
		{"@fortnightly", "descriptor", 1},
		{"* * *", "", 0},
		{"0 0 30 2 *", "", 1},
		{"", "", 0},
	} {
		_, err := Parse(c.expr, "UTC")
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Field != c.field || pe.Pos != c.pos {
			t.Errorf("%q: %v (want field %q at %d)", c.expr, err, c.field, c.pos)
		}
	}
	if _, err := Parse("@every 10ms", "UTC"); err == nil {
		t.Error("@every 10ms accepted")
	}
	if _, err := Parse("0 * * * *", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "unknown time zone") {
		t.Errorf("unknown zone: %v", err)
	}
}
