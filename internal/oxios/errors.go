// Package oxios is the vocabulary the other packages share: what they say
// to each other and to clients, with nothing beyond the standard library,
// so that a client or a printer of records depends on it and not on the
// engines that produce them.
package oxios

import (
	"errors"
	"fmt"
)

// InvalidError is bad input: Field names what is wrong (a spec's field, a
// query parameter, a key), Msg what is allowed. The API answers it with a
// 400 naming the field, the CLI with exit 2.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

// ErrStarting is a request the daemon cannot serve until its boot is done
// (503, to be retried).
var ErrStarting = errors.New("the daemon is still starting; retry in a moment")

// ForbiddenError is a request its caller may not make (403): a spec that
// widens the sandbox without the admin role. Field names what.
type ForbiddenError struct {
	Field string
	Msg   string
}

func (e *ForbiddenError) Error() string { return e.Field + ": " + e.Msg }

// Errors callers test for.
var (
	// ErrNotFound is an agent that does not exist (404).
	ErrNotFound = errors.New("no such agent")
	// ErrConflict is an operation the state of what it names does not
	// allow (409): an agent's, a cron job's.
	ErrConflict = errors.New("not allowed in the agent's state")
	// ErrUnreachable is an operation on another node's agent that its node
	// did not answer (503): it is stopped, partitioned or overloaded.
	ErrUnreachable = errors.New("the node that runs the agent does not answer")
	// ErrClosed is a request to a part that is shutting down (503).
	ErrClosed = errors.New("the supervisor is shutting down")
	// ErrBudget is matched by the errors of exhausted budgets; an agent
	// that ends on one is not restarted by its restart policy.
	ErrBudget = errors.New("budget")
)

// NotFoundError is something other than an agent that does not exist (a
// cron job, a budget); it matches ErrNotFound.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + " does not exist" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}
