package cron

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts has ended by the end of the package's
// tests; nats-server's and nats.go's own that end a little after their
// server closes are the only ones allowed to linger.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
	)
}
