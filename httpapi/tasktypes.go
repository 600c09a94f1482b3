package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// TaskTypes are the task types defined at run time (*task.Catalog).
type TaskTypes interface {
	Put(ctx context.Context, t *taskrunner.ExternalType) (*taskrunner.ExternalType, error)
	Get(ctx context.Context, name string) (*taskrunner.ExternalType, error)
	List(ctx context.Context) ([]taskrunner.ExternalType, error)
	Delete(ctx context.Context, name string, force bool) error
	// Externals are the types as the task service sees them now (read
	// within a short cache), for the OpenAPI document.
	Externals() ([]*task.External, error)
}

var _ TaskTypes = (*task.Catalog)(nil)

// taskTypeView is a task type as the API shows it.
type taskTypeView struct {
	Name           string          `json:"name"`
	Builtin        bool            `json:"builtin"`
	Mode           *string         `json:"mode"`
	ParamsSchema   json.RawMessage `json:"params_schema"`
	TimeoutSeconds *float64        `json:"timeout_seconds"`
	MaxRetries     *int            `json:"max_retries"`
	PushURL        *string         `json:"push_url"`
	CreatedAt      *time.Time      `json:"created_at"`
	UpdatedAt      *time.Time      `json:"updated_at"`
}

func externalTypeView(t *taskrunner.ExternalType) taskTypeView {
	v := taskTypeView{Name: t.Name, Mode: &t.Mode, ParamsSchema: t.ParamsSchema, TimeoutSeconds: t.TimeoutSeconds,
		MaxRetries: t.MaxRetries, CreatedAt: &t.CreatedAt, UpdatedAt: &t.UpdatedAt}
	if t.PushURL != "" {
		v.PushURL = &t.PushURL
	}
	return v
}

func builtinTypeView(t tasktype.Type) (taskTypeView, error) {
	schema, err := json.Marshal(builtinParamsSchema(t))
	if err != nil {
		return taskTypeView{}, err
	}
	v := taskTypeView{Name: t.Name, Builtin: true, ParamsSchema: schema}
	if t.DefaultMaxRetries != 0 {
		v.MaxRetries = &t.DefaultMaxRetries
	}
	return v, nil
}

// jsonSchema is the part of JSON Schema a built-in type's params use, in
// the order the OpenAPI document writes it.
type jsonSchema struct {
	Type                 string                 `json:"type"`
	AdditionalProperties *bool                  `json:"additionalProperties,omitempty"`
	Required             []string               `json:"required,omitempty"`
	Properties           map[string]*jsonSchema `json:"properties,omitempty"`
	MaxLength            int                    `json:"maxLength,omitempty"`
	Minimum              *float64               `json:"minimum,omitempty"`
	Maximum              *float64               `json:"maximum,omitempty"`
	Description          string                 `json:"description,omitempty"`
	Items                *jsonSchema            `json:"items,omitempty"`
}

// builtinParamsSchema is the JSON Schema of t's params: its <Name>Params
// schema in the OpenAPI document (writeParamsSchema), without the example.
func builtinParamsSchema(t tasktype.Type) *jsonSchema {
	closed := false
	s := &jsonSchema{Type: "object", AdditionalProperties: &closed, Properties: map[string]*jsonSchema{}}
	for _, p := range t.Params {
		if p.Required {
			s.Required = append(s.Required, p.Name)
		}
		prop := &jsonSchema{Type: p.Type, MaxLength: p.MaxLength, Minimum: p.Min, Maximum: p.Max, Description: p.Description}
		if p.Type == "array" {
			prop.Items = &jsonSchema{Type: "string"}
		}
		s.Properties[p.Name] = prop
	}
	return s
}

// typesOrError is the catalog, or the refusal of a server built without
// one.
func (s *Server) typesOrError() (TaskTypes, error) {
	if s.deps.TaskTypes == nil {
		return nil, taskrunner.Errorf(taskrunner.CodeNotFound, "this server does not define task types at run time")
	}
	return s.deps.TaskTypes, nil
}

// taskTypeRequest is a PUT /task-types/{name} body.
type taskTypeRequest struct {
	Mode           string          `json:"mode"`
	ParamsSchema   json.RawMessage `json:"params_schema"`
	TimeoutSeconds *float64        `json:"timeout_seconds"`
	MaxRetries     *int            `json:"max_retries"`
	PushURL        *string         `json:"push_url"`
}

// decodeTaskTypeRequest decodes a PUT /task-types/{name} body strictly
// into the type named name.
func decodeTaskTypeRequest(name string, body []byte) (*taskrunner.ExternalType, error) {
	var req taskTypeRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	t := &taskrunner.ExternalType{Name: name, Mode: req.Mode, ParamsSchema: req.ParamsSchema,
		TimeoutSeconds: req.TimeoutSeconds, MaxRetries: req.MaxRetries}
	if req.PushURL != nil {
		t.PushURL = *req.PushURL
	}
	return t, nil
}

func (s *Server) putTaskType(w http.ResponseWriter, r *http.Request) error {
	types, err := s.typesOrError()
	if err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	if err := tasktype.CheckName(name); err != nil {
		return err
	}
	body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
	if err != nil {
		return err
	}
	t, err := decodeTaskTypeRequest(name, body)
	if err != nil {
		return err
	}
	out, err := types.Put(r.Context(), t)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, externalTypeView(out))
	return nil
}

func (s *Server) getTaskType(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if t, ok := s.deps.Tasks.Types().Lookup(name); ok {
		v, err := builtinTypeView(t)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	}
	types, err := s.typesOrError()
	if err != nil {
		return err
	}
	t, err := types.Get(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, externalTypeView(t))
	return nil
}

type taskTypeListBody struct {
	TaskTypes []taskTypeView `json:"task_types"`
}

// listTaskTypes lists the built-in types, then those defined at run time
// (at most task.DefaultMaxExternalTypes of them, so there is no paging).
func (s *Server) listTaskTypes(w http.ResponseWriter, r *http.Request) error {
	body := taskTypeListBody{TaskTypes: []taskTypeView{}}
	for _, t := range s.deps.Tasks.Types().Types() {
		v, err := builtinTypeView(t)
		if err != nil {
			return err
		}
		body.TaskTypes = append(body.TaskTypes, v)
	}
	if s.deps.TaskTypes != nil {
		externals, err := s.deps.TaskTypes.List(r.Context())
		if err != nil {
			return err
		}
		for i := range externals {
			body.TaskTypes = append(body.TaskTypes, externalTypeView(&externals[i]))
		}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) deleteTaskType(w http.ResponseWriter, r *http.Request) error {
	types, err := s.typesOrError()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	for key := range q {
		if key != "force" {
			return taskrunner.Invalid(key, "is not a query parameter of this route")
		}
	}
	force := false
	if v := q.Get("force"); v != "" {
		if force, err = strconv.ParseBool(v); err != nil {
			return taskrunner.Invalid("force", "must be true or false")
		}
	}
	if err := types.Delete(r.Context(), chi.URLParam(r, "name"), force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// externalDocs caches the OpenAPI document with the types defined at run
// time, rendered again only when they change.
type externalDocs struct {
	mu  sync.Mutex
	key string // the types' names and update times the document shows
	doc []byte
}

// currentOpenAPIDocument is the OpenAPI document with the types defined
// at run time as the task service sees them now; the built-in types'
// alone when they cannot be read (the database is down), which is said in
// the log.
func (s *Server) currentOpenAPIDocument(ctx context.Context) []byte {
	if s.deps.TaskTypes == nil {
		return s.openAPIDoc
	}
	externals, err := s.deps.TaskTypes.Externals()
	if err != nil {
		s.deps.Logger.LogAttrs(ctx, slog.LevelWarn, "task types defined at run time unreadable; serving the built-in types' document",
			slog.String("event", "openapi_types_unavailable"), slog.String("error", err.Error()))
		return s.openAPIDoc
	}
	if len(externals) == 0 {
		return s.openAPIDoc
	}
	var key strings.Builder
	docs := make([]ExternalDoc, len(externals))
	for i, e := range externals {
		docs[i] = ExternalDoc{Name: e.Name, Schema: e.ParamsSchema}
		key.WriteString(e.Name + "@" + e.UpdatedAt.Format(time.RFC3339Nano) + ";")
	}
	c := &s.externalDocs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == key.String() {
		return c.doc
	}
	doc, err := openAPIDocumentWith(s.deps.Tasks.Types(), docs)
	if err != nil {
		s.deps.Logger.LogAttrs(ctx, slog.LevelError, "openapi document with task types defined at run time", slog.String("event", "openapi_types_failed"),
			slog.String("error", err.Error()))
		return s.openAPIDoc
	}
	c.key, c.doc = key.String(), doc
	return doc
}
