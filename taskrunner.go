// Package taskrunner is the domain of taskrunner, a task runner with a REST
// API: the task, its runs and its artifacts, the task statuses, and the one
// error type every package returns, with every stable error code
// (error.go).
//
// A task is a River job: its id is the job id, its type the job kind, its
// status the job state. The packages above this one do the work: task is
// the task service, tasktype says how a task type is made and builtin holds
// taskrunner's own, jobs is the worker machinery, artifact stores files in
// MinIO, db is PostgreSQL, httpapi the REST API and app puts them
// together. This package depends on nothing of theirs.
package taskrunner

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Status is a task's status: one of River's job states, one vocabulary in
// the API, in River UI and in SQL. Its JSON is its string.
type Status string

// Task statuses.
const (
	StatusAvailable Status = "available"
	StatusScheduled Status = "scheduled"
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusRetryable Status = "retryable"
	StatusCompleted Status = "completed"
	// StatusCancelled: a client or an operator asked for it.
	StatusCancelled Status = "cancelled"
	// StatusDiscarded: the task failed for good (out of attempts, or an
	// error not worth retrying).
	StatusDiscarded Status = "discarded"
)

// Statuses lists every task status.
var Statuses = []Status{
	StatusAvailable, StatusScheduled, StatusPending, StatusRunning,
	StatusRetryable, StatusCompleted, StatusCancelled, StatusDiscarded,
}

// StatusNames is statuses as strings, for a message listing them or a
// query taking text; nil for nil.
func StatusNames(statuses []Status) []string {
	if statuses == nil {
		return nil
	}
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = string(s)
	}
	return names
}

// Finished reports whether a status is final.
func Finished(status Status) bool {
	switch status {
	case StatusCompleted, StatusCancelled, StatusDiscarded:
		return true
	}
	return false
}

// Task is a task as the API and the tasks view show it.
type Task struct {
	ID     int64
	Type   string
	Status Status
	Params json.RawMessage
	Result json.RawMessage // River's recorded output; nil until there is one
	// ErrorCode and Error are the stable code and the public message of
	// why the task failed or was cancelled (its latest failed run's, or
	// task_cancelled); nil while it has not failed and once it completed.
	ErrorCode   *Code
	Error       *string
	Attempt     int
	MaxAttempts int
	Priority    int
	Queue       string
	// TimeoutSeconds is the task's own timeout; nil when it set none and
	// TASK_MAX_RUNTIME_SECONDS applies (the API's views show that cap).
	TimeoutSeconds *float64
	CreatedAt      time.Time
	ScheduledAt    time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	Metadata       json.RawMessage
	// Owner is the tenant that submitted the task; LocalTenant for a task
	// taskrunner enqueued itself or one submitted before owners existed.
	Owner string

	// Runs, ArtifactIDs and ArtifactCount are filled in when one task is
	// read with its details (task.Service.Get), oldest first; nil
	// otherwise. ArtifactIDs are the first of the task's ArtifactCount
	// artifacts (task.MaxArtifactIDs at most).
	Runs          []Run
	ArtifactIDs   []uuid.UUID
	ArtifactCount int
}

// Run is one attempt of a task.
type Run struct {
	ID            int64      `json:"id"`
	TaskID        int64      `json:"task_id"`
	Attempt       int        `json:"attempt"`
	Key           string     `json:"key"`
	TaskType      string     `json:"task_type"`
	Status        string     `json:"status"`
	ErrorCode     *Code      `json:"error_code"`
	Error         *string    `json:"error"`
	Worker        string     `json:"worker"`
	Interruptions int        `json:"interruptions"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	DurationMS    *float64   `json:"duration_ms"`
}

// Artifact is a file attached to or produced by a task; its bytes are the
// object ObjectKey in Bucket.
type Artifact struct {
	ID          uuid.UUID `json:"id"`
	TaskID      int64     `json:"task_id"`
	Type        string    `json:"type"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Bucket      string    `json:"bucket"`
	ObjectKey   string    `json:"object_key"`
	CreatedAt   time.Time `json:"created_at"`
	// Owner is the owner of the artifact's task when it was stored.
	Owner string `json:"owner"`
}

// CallbackAttempt is one attempt at delivering a task's callback.
type CallbackAttempt struct {
	TaskID     int64     `json:"task_id"`
	DeliveryID uuid.UUID `json:"delivery_id"` // the Taskrunner-Delivery header, the same on each retry
	Event      string    `json:"event"`       // task.completed, task.discarded or task.cancelled
	Attempt    int       `json:"attempt"`
	// StatusCode is the receiver's answer; nil when none came.
	StatusCode *int    `json:"status_code"`
	LatencyMS  float64 `json:"latency_ms"`
	// Error says what went wrong, safe to show the task's owner; nil when
	// delivered.
	Error     *string   `json:"error"`
	Delivered bool      `json:"delivered"`
	GaveUp    bool      `json:"gave_up"` // it failed and was the last attempt
	At        time.Time `json:"at"`
}

// CallbackSecret is a tenant's callback signing secret, as the tenant
// reads it (GET /callbacks/secret): the secret that signs its callbacks,
// and during a rotation's grace the previous one, which signs them too
// until PreviousExpiresAt.
type CallbackSecret struct {
	Secret            string     `json:"secret"`
	Previous          *string    `json:"previous"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
}

// Callback states, as a task's view shows them.
const (
	CallbackPending   = "pending"
	CallbackDelivered = "delivered"
	CallbackFailed    = "failed"
)

// CallbackTally sums up a task's callback attempts so far.
type CallbackTally struct {
	Attempts  int
	Delivered bool // an attempt got a 2xx
	GaveUp    bool // an attempt failed and was the last
}

// State is the callback's state: delivered once an attempt got a 2xx,
// failed once one gave up without any delivered, pending otherwise (none
// yet, or retries to come).
func (t CallbackTally) State() string {
	switch {
	case t.Delivered:
		return CallbackDelivered
	case t.GaveUp:
		return CallbackFailed
	}
	return CallbackPending
}
