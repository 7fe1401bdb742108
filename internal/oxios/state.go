package oxios

import (
	"encoding/json"
	"time"
)

// Entry is one state document at one revision.
type Entry struct {
	Namespace string          `json:"namespace"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value,omitempty"`
	Revision  uint64          `json:"revision"`
	Updated   time.Time       `json:"updated"`
}
