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

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}
