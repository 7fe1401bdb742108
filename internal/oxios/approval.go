package oxios

import "time"

// ApprovalState is where an approval is.
type ApprovalState string

// The states; pending is the only one that changes.
const (
	Pending  ApprovalState = "pending"
	Approved ApprovalState = "approved"
	Rejected ApprovalState = "rejected"
)

// Approval is one request for a human's decision.
type Approval struct {
	ID      string `json:"id"`
	AgentID string `json:"agent_id"`
	Tool    string `json:"tool"`
	// Args summarises the call's arguments.
	Args      string        `json:"args"`
	State     ApprovalState `json:"state"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt *time.Time    `json:"expires_at"`
	DecidedAt *time.Time    `json:"decided_at"`
	DecidedBy string        `json:"decided_by,omitempty"`
	Reason    string        `json:"reason,omitempty"`
}
