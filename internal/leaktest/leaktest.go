// Package leaktest is the one goleak check of the packages' tests: every
// goroutine a package's tests start has ended when they are done, except
// nats-server's and nats.go's own, which end shortly after their server.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests, then fails them if a goroutine leaked.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
	)
}
