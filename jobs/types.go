package jobs

import (
	"errors"
	"time"

	"github.com/taskrunner/taskrunner"
)

// Metadata is what taskrunner stores in a job's River metadata.
type Metadata struct {
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Owner is the tenant that submitted the task; empty for jobs
	// taskrunner enqueues itself, which belong to taskrunner.LocalTenant.
	Owner string `json:"owner,omitempty"`
	// CallbackURL is where the task's view is POSTed when it reaches a
	// final state, in the canonical form checked at submit; empty for
	// none. A database trigger reads it (migration 00007).
	CallbackURL string `json:"callback_url,omitempty"`
	// CallbackQueue is the River queue the callback's deliveries go to
	// (CallbackQueueFor); the database trigger reads it (migration 00014).
	// Tasks enqueued before it have none: theirs go to 'default'.
	CallbackQueue string `json:"callback_queue,omitempty"`
	// Schedule is the name of the schedule (of the task's owner) that
	// enqueued the task, and ScheduleTick the tick it was enqueued for;
	// empty and nil for a task a client submitted. A unique index over
	// them keeps a tick from enqueueing two tasks (migration 00008).
	Schedule     string     `json:"schedule,omitempty"`
	ScheduleTick *time.Time `json:"schedule_tick,omitempty"`
}

// publicMessages are what clients are shown for codes whose errors carry
// no public message of their own.
var publicMessages = map[taskrunner.Code]string{
	taskrunner.CodeTaskFailed:          "the task failed; the server log has the details",
	taskrunner.CodeTaskCancelled:       "the task was cancelled",
	taskrunner.CodeTaskRuntimeExceeded: "the task ran longer than its timeout and was killed",
	taskrunner.CodeTaskInterrupted:     "the worker stopped during the attempt; the task went back to the queue",
	taskrunner.CodeWorkerLost:          "the worker running the attempt stopped without finishing it",
	taskrunner.CodeFetchHTTPError:      "the server answered with an error status",
	taskrunner.CodeSearchFailed:        "every search source failed",

	taskrunner.CodeInvalidURL:                "the URL cannot be fetched",
	taskrunner.CodeDomainNotAllowed:          "the URL's domain is not allowed by FETCH_DOMAIN_ALLOWLIST",
	taskrunner.CodePortNotAllowed:            "the URL's port is not allowed (FETCH_ALLOWED_PORTS)",
	taskrunner.CodeAddressNotAllowed:         "the URL's host does not resolve, or is or resolves to an address that may not be fetched",
	taskrunner.CodeTooManyRedirects:          "the page redirected too many times",
	taskrunner.CodeArtifactSizeExceeded:      "the body is larger than TASK_MAX_ARTIFACT_MB",
	taskrunner.CodeFetchTimeout:              "the page did not answer in time",
	taskrunner.CodeFetchFailed:               "the page could not be fetched: the name could not be resolved now, or the connection failed",
	taskrunner.CodeArtifactInvalid:           "the result could not be stored as an artifact",
	taskrunner.CodeSearchProviderUnavailable: "search is not available",
}

// PublicMessage is what clients are shown of a failure with code: err's
// own public message (its *taskrunner.Error's Message), else the code's
// fixed message. Never the error's text, which may name hosts, keys,
// queries or types.
func PublicMessage(code taskrunner.Code, err error) string {
	var e *taskrunner.Error
	if errors.As(err, &e) && e.Code == code && e.Message != "" {
		return e.Message
	}
	if m, ok := publicMessages[code]; ok {
		return m
	}
	return publicMessages[taskrunner.CodeTaskFailed]
}
