package oxios

import "time"

// AuditEntry is one audited action.
type AuditEntry struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Node is the daemon that wrote the entry (empty in entries from before
	// clusters).
	Node     string `json:"node,omitempty"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	// Outcome is ok, denied or failed.
	Outcome string         `json:"outcome"`
	Detail  map[string]any `json:"detail,omitempty"`
	// Prev is the MAC of the entry before (empty for the first).
	Prev string `json:"prev"`
	MAC  string `json:"mac"`
}

// AuditVerdict is the result of verifying the audit trail.
type AuditVerdict struct {
	OK      bool   `json:"ok"`
	Entries uint64 `json:"entries"`
	// FirstBroken is the first entry that does not verify (0 when OK).
	FirstBroken uint64 `json:"first_broken,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Missing counts the entries known to be lost: gaps in the stream, a
	// tail cut short of the signed head, losses noted by DamagedAction.
	Missing uint64 `json:"missing,omitempty"`
	// Head is the sequence of the signed head.
	Head uint64 `json:"head,omitempty"`
	// Damage lists every break found, oldest first (Reason is the first).
	Damage []string `json:"damage,omitempty"`
}
