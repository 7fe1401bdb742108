package oxios

import "time"

// The timeouts every part shares, named once.
const (
	// BackboneTimeout bounds one request to the backbone: a write, a read,
	// a stream's or bucket's API call. Past it the backbone is taken to be
	// unreachable (a NATS leader election lasts a few seconds).
	BackboneTimeout = 10 * time.Second
	// RequestReadTimeout bounds how long an HTTP request's headers, and
	// then its body, may take to arrive.
	RequestReadTimeout = 10 * time.Second
	// StopTimeout is the default time between an agent's stop signal and
	// SIGKILL, and the daemon's own stop_timeout.
	StopTimeout = 10 * time.Second
	// ExitWait is how long a new daemon waits for a killed one to finish
	// exiting (a thread in an fsync holds its PID file a while).
	ExitWait = 10 * time.Second
	// FetchWait is how long a follower of the event log waits for a batch
	// before it asks again.
	FetchWait = 10 * time.Second
)
