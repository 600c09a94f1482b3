package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// TaskType is a task type as the API shows it: a built-in one (Builtin,
// without a mode) or one defined at run time.
type TaskType struct {
	Name    string `json:"name"`
	Builtin bool   `json:"builtin"`
	// Mode is "pull" or "push"; nil for a built-in type.
	Mode         *string         `json:"mode"`
	ParamsSchema json.RawMessage `json:"params_schema"`
	// TimeoutSeconds and MaxRetries apply to a task that gives none; nil
	// for the server's defaults.
	TimeoutSeconds *float64   `json:"timeout_seconds"`
	MaxRetries     *int       `json:"max_retries"`
	PushURL        *string    `json:"push_url"`
	CreatedAt      *time.Time `json:"created_at"`
	UpdatedAt      *time.Time `json:"updated_at"`
	// Raw is the answer as received (TaskType and PutTaskType only).
	Raw json.RawMessage `json:"-"`
}

// TaskTypeRequest defines a task type at run time (PutTaskType).
type TaskTypeRequest struct {
	// Mode is "pull" or "push".
	Mode string `json:"mode"`
	// ParamsSchema is the JSON Schema a task's params must satisfy.
	ParamsSchema   json.RawMessage `json:"params_schema"`
	TimeoutSeconds *float64        `json:"timeout_seconds,omitempty"`
	MaxRetries     *int            `json:"max_retries,omitempty"`
	// PushURL is required for push, refused for pull.
	PushURL string `json:"push_url,omitempty"`
}

// TaskTypes returns every task type, the built-in ones first.
func (c *Client) TaskTypes(ctx context.Context) ([]TaskType, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var body struct {
		TaskTypes []TaskType `json:"task_types"`
	}
	var raw json.RawMessage
	if err := c.doJSON(ctx, http.MethodGet, "/task-types", nil, nil, &body, &raw); err != nil {
		return nil, err
	}
	return body.TaskTypes, nil
}

// TaskType returns the task type name.
func (c *Client) TaskType(ctx context.Context, name string) (*TaskType, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var t TaskType
	if err := c.doJSON(ctx, http.MethodGet, taskTypePath(name), nil, nil, &t, &t.Raw); err != nil {
		return nil, err
	}
	return &t, nil
}

// PutTaskType defines the task type name, or replaces it (admins only),
// and returns it as stored.
func (c *Client) PutTaskType(ctx context.Context, name string, req TaskTypeRequest) (*TaskType, error) {
	buf, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var t TaskType
	if err := c.doJSON(ctx, http.MethodPut, taskTypePath(name), bytes.NewReader(buf), nil, &t, &t.Raw); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteTaskType deletes the task type name defined at run time (admins
// only). While tasks of it wait or run the server refuses with
// task_type_in_use, unless force.
func (c *Client) DeleteTaskType(ctx context.Context, name string, force bool) error {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	path := taskTypePath(name)
	if force {
		path += "?force=true"
	}
	return c.doJSON(ctx, http.MethodDelete, path, nil, nil, nil, nil)
}

func taskTypePath(name string) string { return "/task-types/" + url.PathEscape(name) }
