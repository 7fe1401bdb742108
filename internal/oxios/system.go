package oxios

import "time"

// VersionInfo describes a build of oxios.
type VersionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// PartStatus is the readiness of one part of the daemon.
type PartStatus struct {
	Name  string `json:"name"`
	State string `json:"state"` // starting, ready, stopping, stopped, failed
	// Damage is what is wrong with a part that runs on regardless (an
	// audit trail whose tail was cut, say).
	Damage string `json:"damage,omitempty"`
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready    bool         `json:"ready"`
	PID      int          `json:"pid"`
	Parts    []PartStatus `json:"parts"`
	NotReady []string     `json:"not_ready,omitempty"`
	// Damaged lists the parts that are ready but damaged, with why.
	Damaged []string `json:"damaged,omitempty"`
}

// System is the body of GET /api/v1/system.
type System struct {
	VersionInfo
	Node          string    `json:"node"`
	PID           int       `json:"pid"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Listen        string    `json:"listen"`
	Home          string    `json:"home"`
	// Config summarizes the running configuration (no secrets).
	Config map[string]any `json:"config,omitempty"`
}

// ReloadResult says what a reload changed: the settings applied at once
// and the changed ones that take effect only after a restart.
type ReloadResult struct {
	Applied       []string `json:"applied"`
	RestartNeeded []string `json:"restart_needed"`
}

// ErrorBody is the error envelope every /api/ error is sent in:
// {"error": {"code": "not_found", "message": "...", "field": "..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of the error envelope.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

// LogLines is the answer of GET /api/v1/agents/{id}/logs.
type LogLines struct {
	Lines []string `json:"lines"`
}
