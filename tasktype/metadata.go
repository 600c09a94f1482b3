package tasktype

import (
	"encoding/json"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// Metadata is what taskrunner stores in a task's River metadata: the one
// typed form of it, which the task service writes and the workers, the
// run recorder and the database triggers read.
type Metadata struct {
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Owner is the tenant that submitted the task; empty for a task of a
	// server without keys, which belongs to taskrunner.LocalTenant.
	Owner string `json:"owner,omitempty"`
	// CallbackURL is where the task's view is POSTed when it reaches a
	// final state, in the canonical form checked at submit; empty for
	// none. A database trigger reads it (migration 00007).
	CallbackURL string `json:"callback_url,omitempty"`
	// CallbackQueue is the River queue the callback's deliveries go to
	// (jobs.CallbackQueueFor); the database trigger reads it (migration
	// 00014). Tasks enqueued before it have none: theirs go to 'default'.
	CallbackQueue string `json:"callback_queue,omitempty"`
	// Schedule is the name of the schedule (of the task's owner) that
	// enqueued the task, and ScheduleTick the tick it was enqueued for;
	// empty and nil for a task a client submitted. A unique index over
	// them keeps a tick from enqueueing two tasks (migration 00008).
	Schedule     string     `json:"schedule,omitempty"`
	ScheduleTick *time.Time `json:"schedule_tick,omitempty"`
}

// MetadataOf is job's metadata; ok is false when it is not the object
// taskrunner writes (a job inserted by other means).
func MetadataOf(job *rivertype.JobRow) (m Metadata, ok bool) {
	if len(job.Metadata) == 0 {
		return m, true
	}
	return m, json.Unmarshal(job.Metadata, &m) == nil
}
