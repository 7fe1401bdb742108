package backbone

import (
	"sync"
	"time"
	_ "unsafe" // go:linkname, for the raft timings below

	_ "github.com/nats-io/nats-server/v2/server"
)

// The embedded servers' Raft timings. nats-server's defaults (a heartbeat
// a second, elections after 4 to 9 s of silence) are made for clusters of
// their own; an oxios cluster fails agents over when their node has been
// silent for cluster.lease, and writes of their records wait for the
// agents stream to elect a new leader if the dead node led it. So an
// embedded cluster's servers beat twice a second and elect after 1.5 to 3
// s of silence: the timings nats-server's own cluster tests use for
// elections. nats-server has no option for them; they are its package
// variables, set here once, before this process's first clustered server
// starts. An external NATS cluster keeps its own.
var (
	//go:linkname raftHeartbeat github.com/nats-io/nats-server/v2/server.hbInterval
	raftHeartbeat time.Duration
	//go:linkname raftMinElection github.com/nats-io/nats-server/v2/server.minElectionTimeout
	raftMinElection time.Duration
	//go:linkname raftMaxElection github.com/nats-io/nats-server/v2/server.maxElectionTimeout
	raftMaxElection time.Duration

	raftTuned sync.Once
)

// Raft timings of the embedded clustered servers.
const (
	RaftHeartbeat   = 500 * time.Millisecond
	RaftMinElection = 1500 * time.Millisecond
	RaftMaxElection = 3 * time.Second
)

// tuneRaft sets the Raft timings of the embedded servers, once.
func tuneRaft() {
	raftTuned.Do(func() {
		raftHeartbeat, raftMinElection, raftMaxElection = RaftHeartbeat, RaftMinElection, RaftMaxElection
	})
}
