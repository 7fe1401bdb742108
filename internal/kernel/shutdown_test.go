package kernel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

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
