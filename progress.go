package taskrunner

import (
	"bytes"
	"encoding/json"
	"time"
)

// Progress is what a worker last reported of a task's attempt: done out of
// total (0 when the total is not known) and a short message. It is kept in
// the task's River metadata under "progress".
type Progress struct {
	Done    int64  `json:"done"`
	Total   int64  `json:"total"`
	Message string `json:"message"`
	// Attempt is the attempt that reported it; Seq counts the reports of
	// that attempt that were stored, from 1.
	Attempt   int       `json:"attempt"`
	Seq       int64     `json:"seq"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ProgressOf is the progress stored in t's metadata by its current attempt,
// or nil when there is none (an earlier attempt's is stale).
func ProgressOf(t *Task) *Progress {
	if !bytes.Contains(t.Metadata, []byte(`"progress"`)) {
		return nil // most tasks report none: no decoding for them
	}
	var m struct {
		Progress *Progress `json:"progress"`
	}
	if json.Unmarshal(t.Metadata, &m) != nil || m.Progress == nil || m.Progress.Attempt != t.Attempt {
		return nil
	}
	return m.Progress
}
