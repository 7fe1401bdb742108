// Package cluster makes several daemons one oxios: the cluster key that
// every node shares, the membership of the nodes (heartbeats with a TTL in
// the nodes bucket, alive, suspect or dead, a name held by one live node
// only), and the forwarding of an agent's operations to the node that
// runs it. It works the same on the embedded cluster and on an external
// NATS cluster: everything goes through the backbone's connection.
package cluster
