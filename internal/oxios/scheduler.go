package oxios

// SchedulerLimits bound admission. Zero SpawnsPerMinute means no rate limit.
type SchedulerLimits struct {
	MaxRunning      int `json:"max_running"`
	MaxRunningLLM   int `json:"max_running_llm"`
	SpawnsPerMinute int `json:"spawns_per_minute"`
}

// SchedulerSnapshot is the scheduler's state at one moment.
type SchedulerSnapshot struct {
	Limits     SchedulerLimits `json:"limits"`
	Running    int             `json:"running"`
	RunningLLM int             `json:"running_llm"`
	// Queued lists the waiting ids of each priority in admission order,
	// highest priority first.
	Queued      []QueueLevel `json:"queued"`
	QueuedTotal int          `json:"queued_total"`
}

// QueueLevel is the queue of one priority.
type QueueLevel struct {
	Priority string   `json:"priority"`
	IDs      []string `json:"ids"`
}
