package oxios

import (
	"encoding/json"
	"time"
)

// Event is the envelope of every event.
type Event struct {
	// Seq is the event's position in the log, assigned when stored.
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	AgentID string          `json:"agent_id,omitempty"`
	Node    string          `json:"node"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// GapType is the type of the synthetic event a subscriber receives when
// events it asked for are no longer in the log (dropped by retention).
// Its data says which sequences were missed; it is never stored.
const GapType = "bus.gap"
