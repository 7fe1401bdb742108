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

// WireError carries an error between nodes with its kind, so that the
// node a client asked answers it as the node that did the work would have.
type WireError struct {
	Kind  string `json:"kind"` // not_found, conflict, invalid, unreachable, other
	Msg   string `json:"msg"`
	Field string `json:"field,omitempty"`
}

// ToWire is err as it travels to another node.
func ToWire(err error) *WireError {
	var inv *InvalidError
	switch {
	case errors.As(err, &inv):
		return &WireError{Kind: "invalid", Msg: inv.Msg, Field: inv.Field}
	case errors.Is(err, ErrNotFound):
		return &WireError{Kind: "not_found", Msg: err.Error()}
	case errors.Is(err, ErrConflict):
		return &WireError{Kind: "conflict", Msg: err.Error()}
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnreachable):
		return &WireError{Kind: "unreachable", Msg: err.Error()}
	}
	return &WireError{Kind: "other", Msg: err.Error()}
}

// Err is the error w carries, as answered by node: its message, matching
// the sentinel of its kind.
func (w *WireError) Err(node string) error {
	switch w.Kind {
	case "invalid":
		return &InvalidError{Field: w.Field, Msg: w.Msg}
	case "not_found":
		return &wireErr{w.Msg, ErrNotFound}
	case "conflict":
		return &wireErr{w.Msg, ErrConflict}
	case "unreachable":
		return &wireErr{"node " + node + ": " + w.Msg, ErrUnreachable}
	}
	return fmt.Errorf("node %s: %s", node, w.Msg)
}

type wireErr struct {
	msg  string
	kind error
}

func (e *wireErr) Error() string { return e.msg }
func (e *wireErr) Unwrap() error { return e.kind }
