package taskrunner

import (
	"encoding/json"
	"time"
)

// How the tasks of an external type are worked: ExternalType.Mode.
const (
	// ModePull: workers outside the server claim the tasks over HTTP.
	ModePull = "pull"
	// ModePush: the server posts each task to the type's PushURL.
	ModePush = "push"
)

// ExternalType is a task type defined at run time (PUT /task-types/{name})
// and worked outside the server's own workers: its params are checked
// against ParamsSchema, a JSON Schema, when a task is submitted.
type ExternalType struct {
	// Name is the task type in the API and the River job kind.
	Name string
	Mode string // ModePull or ModePush
	// ParamsSchema is the JSON Schema a task's params must satisfy, as the
	// client gave it.
	ParamsSchema json.RawMessage
	// TimeoutSeconds and MaxRetries are the defaults of a task of the
	// type that sets none; nil for the server's own.
	TimeoutSeconds *float64
	MaxRetries     *int
	// PushURL is where a push type's tasks are posted; "" for pull.
	PushURL   string
	CreatedAt time.Time
	UpdatedAt time.Time
}
