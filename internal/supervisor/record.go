package supervisor

import "github.com/oxios/oxios/internal/oxios"

// The agent vocabulary, defined in package oxios.
type (
	State    = oxios.State
	Usage    = oxios.Usage
	Record   = oxios.Record
	ToolCall = oxios.ToolCall
)

// The states of an agent. Succeeded, failed and killed are terminal.
const (
	Queued          = oxios.Queued
	Starting        = oxios.Starting
	Running         = oxios.Running
	WaitingApproval = oxios.WaitingApproval
	Backoff         = oxios.Backoff
	Succeeded       = oxios.Succeeded
	Failed          = oxios.Failed
	Killed          = oxios.Killed
)

// States lists every state, in lifecycle order.
var States = oxios.States

// Bounds on what one record holds (see oxios).
const (
	MaxToolCalls  = oxios.MaxToolCalls
	OutputPreview = oxios.OutputPreview
	MaxOutput     = oxios.MaxOutput
	// maxReason and maxCallText bound a record's reason and each tool
	// call's error text.
	maxReason   = 2 << 10
	maxCallText = 1 << 10
)

// Clip returns s cut to at most n bytes, at a character boundary.
func Clip(s string, n int) string { return oxios.Clip(s, n) }

func ptr[T any](v T) *T { return &v }
