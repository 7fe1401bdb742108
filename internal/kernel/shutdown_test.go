package kernel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/config"
)

// A part whose stop ignores its deadline (issue 15.9: Tokens.Close waited
// on DeleteConsumer through a NATS leader election) does not hang the
// shutdown: the next parts still stop, each within its deadline.
func TestShutdownRespectsEachDeadline(t *testing.T) {
	var cfg config.Config
	cfg.Daemon.ShutdownTimeout.Duration = 200 * time.Millisecond
	k := &Kernel{opts: Options{Config: cfg}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), states: map[string]string{}, damage: map[string]string{}}
	release := make(chan struct{})
	defer close(release)
	var order []string
	parts := []part{
		{name: "backbone", stop: func(context.Context) error { order = append(order, "backbone"); return nil }},
		{name: "tokens", stop: func(context.Context) error { <-release; return nil }}, // ignores ctx
		{name: "http", stop: func(ctx context.Context) error { order = append(order, "http"); return nil }},
	}
	start := time.Now()
	k.shutdown(parts)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s with a 200ms deadline per part", d)
	}
	if len(order) != 2 || order[0] != "http" || order[1] != "backbone" {
		t.Fatalf("parts stopped: %v", order)
	}
	if k.states["tokens"] != "stopped" || k.states["backbone"] != "stopped" {
		t.Fatalf("states: %v", k.states)
	}
	if err := stopWithin(context.Background(), func(context.Context) error { return errors.New("x") }); err == nil || err.Error() != "x" {
		t.Fatalf("stopWithin passes the error on: %v", err)
	}
}

// A part whose start fails is cleaned up at once (issue 16.3: approvals
// stayed open when the checkpoints bucket could not be), the parts before
// it are handed to shutdown, and none after it starts.
func TestBootCleansUpAFailedPart(t *testing.T) {
	var cfg config.Config
	cfg.Daemon.ShutdownTimeout.Duration = time.Second
	k := &Kernel{opts: Options{Config: cfg}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), states: map[string]string{}, damage: map[string]string{}}
	var stopped, started []string
	mk := func(name string, fail bool) part {
		return part{name: name,
			start: func(context.Context) error {
				started = append(started, name)
				if fail {
					return errors.New("no bucket")
				}
				return nil
			},
			stop: func(context.Context) error { stopped = append(stopped, name); return nil }}
	}
	booted, err := k.boot(context.Background(), []part{mk("backbone", false), mk("supervisor", true), mk("http", false)})
	if err == nil || err.Error() != "start supervisor: no bucket" {
		t.Fatalf("boot: %v", err)
	}
	if len(booted) != 1 || booted[0].name != "backbone" || len(started) != 2 {
		t.Fatalf("booted %d parts, started %v", len(booted), started)
	}
	if len(stopped) != 1 || stopped[0] != "supervisor" || k.states["supervisor"] != "failed" {
		t.Fatalf("stopped %v, states %v", stopped, k.states)
	}
	// The parts' stops close only what was opened.
	var never *bus.Bus
	closeIf(never) // does not panic
}
