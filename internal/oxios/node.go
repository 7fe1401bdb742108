package oxios

import "time"

// NodeState is where a node stands in the cluster, as this node sees it.
type NodeState string

// The states of a node.
const (
	// NodeAlive beats on time.
	NodeAlive NodeState = "alive"
	// NodeSuspect has missed a beat.
	NodeSuspect NodeState = "suspect"
	// NodeDead has not beaten for a lease (or its heartbeat expired).
	NodeDead NodeState = "dead"
	// NodeLeft stopped gracefully.
	NodeLeft NodeState = "left"
)

// Node is one daemon of the cluster: its heartbeat, as it wrote it, and
// its state as the answering node sees it.
type Node struct {
	Name string `json:"name"`
	// Address is the node's HTTP API and dashboard.
	Address string `json:"address"`
	// Route is the node's route address on an embedded cluster.
	Route     string            `json:"route,omitempty"`
	Version   string            `json:"version"`
	Labels    map[string]string `json:"labels"`
	StartedAt time.Time         `json:"started_at"`
	// BeatAt is when the node wrote its last heartbeat, by its clock.
	BeatAt time.Time `json:"beat_at"`
	// Running is how many of its agents run; FreeSlots how many more its
	// scheduler admits.
	Running   int `json:"running"`
	FreeSlots int `json:"free_slots"`
	// MaxRunning is its scheduler's limit on running agents.
	MaxRunning int `json:"max_running"`
	// Drained nodes take no new agents and move theirs away.
	Drained bool `json:"drained,omitempty"`
	// Instance tells this node's home apart from another with its name.
	Instance string    `json:"instance"`
	State    NodeState `json:"state"`
	// SeenAgo is how long ago the answering node last heard from it.
	SeenAgo string `json:"seen_ago,omitempty"`
	// Left is set by the node itself when it stops gracefully.
	Left bool `json:"left,omitempty"`
}

// NodeList is the answer of GET /api/v1/nodes.
type NodeList struct {
	Items []Node `json:"items"`
	// Self is the answering node's name.
	Self string `json:"self"`
}
