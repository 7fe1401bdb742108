// Package leaktest is the one goleak check of the packages' tests: every
// goroutine a package's tests start has ended when they are done, with
// no exception (goleak retries a while, for those that end just after).
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests, then fails them if a goroutine leaked.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
