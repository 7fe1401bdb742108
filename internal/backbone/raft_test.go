package backbone

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// A clustered embedded server elects a new leader after 1.5 to 3 s of
// silence, not nats-server's 4 to 9 s: the timings are in place once a
// clustered server has been configured.
func TestRaftTimings(t *testing.T) {
	var opts server.Options
	if err := clusterOptions(&opts, &Cluster{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if raftHeartbeat != RaftHeartbeat || raftMinElection != RaftMinElection || raftMaxElection != RaftMaxElection {
		t.Fatalf("raft timings %s, %s–%s", raftHeartbeat, raftMinElection, raftMaxElection)
	}
}
