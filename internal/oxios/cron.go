package oxios

import "time"

// CronDef is a cron job's definition.
type CronDef struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	// Zone is an IANA time zone; empty is the daemon's local zone.
	Zone    string `json:"zone,omitempty"`
	Overlap string `json:"overlap"`
	Missed  string `json:"missed"`
	Enabled bool   `json:"enabled"`
	// Spec is what each firing spawns.
	Spec Spec `json:"spec"`
	// Source is "api" or "config"; config jobs are read-only through the API.
	Source string `json:"source"`
	// ByAdmin is set for a job an admin created through the API: only its
	// firings (and those of the config file's jobs) may widen the sandbox;
	// the others are judged again at each firing, paths included.
	ByAdmin   bool      `json:"by_admin,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// CronFired is one firing of a job.
type CronFired struct {
	At time.Time `json:"at"`
	// Action is run, skip (the previous run was active), queue (it runs
	// when the previous one ends) or error (the spawn failed).
	Action  string `json:"action"`
	Manual  bool   `json:"manual,omitempty"`
	Missed  int    `json:"missed,omitempty"`
	AgentID string `json:"agent_id,omitempty"`
	Error   string `json:"error,omitempty"`
	// State is the spawned agent's state now (not stored).
	State string `json:"state,omitempty"`
}

// CronStatus is a cron job as the API shows it.
type CronStatus struct {
	CronDef
	// Node is the node that fires the job: the one it was created on, or
	// whose config file has it.
	Node    string     `json:"node"`
	NextRun *time.Time `json:"next_run"`
	LastRun *time.Time `json:"last_run"`
	// LastOutcome is the state of the last firing's agent (succeeded,
	// failed, running, ...), or skipped, queued or error; empty: never.
	LastOutcome string `json:"last_outcome"`
	// Recent are the latest firings, newest first: the last runs (with
	// their agents) and the last skipped, queued or failed firings.
	Recent []CronFired `json:"recent"`
	// Error says why a stored job cannot be scheduled (it does not fire).
	Error string `json:"error,omitempty"`
}

// CronAction is what one firing of a cron job does (CronFired.Action).
type CronAction string

// Actions of a firing; a firing whose spawn failed says "error".
const (
	CronRun   CronAction = "run"
	CronSkip  CronAction = "skip"
	CronQueue CronAction = "queue"
)
