// Package cron computes when cron jobs fire: standard 5-field expressions,
// descriptors (@hourly, @daily, ...) and @every intervals, each in a time
// zone of its own.
package cron

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // named zones work on hosts without zoneinfo

	robfig "github.com/robfig/cron/v3"
)

// Schedule says when a job fires.
type Schedule struct {
	expr  string
	loc   *time.Location
	sched robfig.Schedule
	// fixedHour: the expression names its hours (daily at 02:30, ...);
	// such a job fires once when clocks go back and a time comes twice.
	// A job run every hour follows real time and fires in both.
	fixedHour bool
}

// ParseError is an expression that cannot be parsed; Pos is the 1-based
// character position of the offending field.
type ParseError struct {
	Expr  string
	Pos   int
	Field string
	Msg   string
}

func (e *ParseError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s (in %q)", e.Msg, e.Expr)
	}
	return fmt.Sprintf("%s at position %d (%s field %q of %q)", e.Msg, e.Pos, e.Field, fieldAt(e.Expr, e.Pos), e.Expr)
}

func fieldAt(expr string, pos int) string {
	if pos < 1 || pos > len(expr) {
		return ""
	}
	rest := expr[pos-1:]
	if i := strings.IndexAny(rest, " \t"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

var fieldNames = []string{"minute", "hour", "day of month", "month", "day of week"}

var parser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Parse reads expr ("*/5 * * * *", "@hourly", "@every 30s") for the time
// zone named zone ("" is the local zone). Errors are *ParseError, or name
// the zone.
func Parse(expr, zone string) (Schedule, error) {
	loc := time.Local
	if zone != "" {
		l, err := time.LoadLocation(zone)
		if err != nil || strings.Contains(zone, " ") {
			return Schedule{}, fmt.Errorf("unknown time zone %q (use an IANA name such as Europe/Berlin or UTC)", zone)
		}
		loc = l
	}
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return Schedule{}, &ParseError{Expr: expr, Msg: "the expression is empty"}
	}
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return Schedule{}, &ParseError{Expr: expr, Pos: 1, Msg: "give the time zone as the job's zone, not in the expression"}
	}
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		if v, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && v < time.Second {
			return Schedule{}, &ParseError{Expr: expr, Pos: 8, Field: "interval", Msg: fmt.Sprintf("@every needs at least 1s (got %s)", v)}
		}
	}
	sched, err := parser.Parse(expr)
	if err != nil {
		return Schedule{}, explain(expr, err)
	}
	s := Schedule{expr: expr, loc: loc, sched: sched, fixedHour: fixedHour(expr)}
	if s.Next(time.Now()).IsZero() {
		// robfig accepts a date that never comes, such as February 30.
		return Schedule{}, &ParseError{Expr: expr, Pos: 1, Msg: "never fires: no date matches the day of month and month fields"}
	}
	return s, nil
}

// explain finds which field of expr is wrong and where it starts.
func explain(expr string, err error) error {
	if strings.HasPrefix(expr, "@") {
		return &ParseError{Expr: expr, Pos: 1, Field: "descriptor",
			Msg: "must be @yearly, @monthly, @weekly, @daily, @hourly or @every <duration> (" + err.Error() + ")"}
	}
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return &ParseError{Expr: expr, Msg: fmt.Sprintf("needs 5 fields (minute hour day-of-month month day-of-week), got %d", len(fields))}
	}
	pos := 0
	for i, f := range fields {
		pos = strings.Index(expr[pos:], f) + pos
		probe := make([]string, 5)
		for j := range probe {
			probe[j] = "*"
		}
		probe[i] = f
		if _, perr := parser.Parse(strings.Join(probe, " ")); perr != nil {
			return &ParseError{Expr: expr, Pos: pos + 1, Field: fieldNames[i], Msg: plain(perr)}
		}
		pos += len(f)
	}
	return &ParseError{Expr: expr, Msg: err.Error()}
}

var (
	badInt   = regexp.MustCompile(`failed to parse int from (\S*): .*`)
	outRange = regexp.MustCompile(`(?:beginning|end) of range \((\d+)\) (?:below minimum|above maximum) \((\d+)\): .*`)
)

// plain rewords the parser's errors for people.
func plain(err error) string {
	msg := err.Error()
	if m := badInt.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%q is not a number or a name", m[1])
	}
	if m := outRange.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s is out of range (limit %s)", m[1], m[2])
	}
	return msg
}

// fixedHour reports whether expr names the hours it fires at.
func fixedHour(expr string) bool {
	switch expr {
	case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight":
		return true
	}
	f := strings.Fields(expr)
	return len(f) == 5 && f[1] != "*" && !strings.HasPrefix(f[1], "*/")
}

// Next returns the first firing strictly after t, in the schedule's zone;
// zero if there is none. When clocks go back and a wall-clock time comes
// twice, a job with fixed hours fires at its first occurrence only (the
// rule of Vixie cron); a job that runs every hour fires in both.
//
// An @every schedule fires at the multiples of its interval (counted
// from the zero time, so at :00 and :30 of each minute for @every 30s):
// every node of a cluster computes the same times, whenever it started.
func (s Schedule) Next(t time.Time) time.Time {
	if every, ok := s.sched.(robfig.ConstantDelaySchedule); ok {
		return t.Truncate(every.Delay).Add(every.Delay).In(s.loc)
	}
	n := s.sched.Next(t.In(s.loc))
	if !s.fixedHour {
		return n
	}
	for i := 0; i < 200 && !n.IsZero() && repeated(n); i++ { // up to a firing a minute for 2h
		n = s.sched.Next(n)
	}
	return n
}

// repeated reports whether n is the second occurrence of its wall-clock
// time, in the hour after clocks went back.
func repeated(n time.Time) bool {
	_, off := n.Zone()
	_, before := n.Add(-3 * time.Hour).Zone() // shifts are at most 2h
	if before <= off {
		return false
	}
	first := n.Add(-time.Duration(before-off) * time.Second)
	_, firstOff := first.Zone()
	return firstOff == before && sameWall(first, n)
}

func sameWall(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute()
}

// String is the expression.
func (s Schedule) String() string { return s.expr }

// Location is the schedule's time zone.
func (s Schedule) Location() *time.Location { return s.loc }
