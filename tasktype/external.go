package tasktype

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/taskrunner/taskrunner"
)

// Bounds on a task type defined at run time.
const (
	// MaxNameLength bounds a type's name.
	MaxNameLength = 63
	// MaxSchemaBytes bounds a type's params_schema as the client sends it.
	MaxSchemaBytes = 64 << 10
)

// nameRule is what a task type's name may be: a lowercase letter, then
// lowercase letters, digits and '_'. The task_types table checks the same.
var nameRule = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// CheckName refuses a name a task type defined at run time may not have,
// naming the field "name": one breaking the rule, or starting with
// ReservedPrefix. Whether it is a built-in type's is the catalog's to say.
func CheckName(name string) error {
	switch {
	case name == "":
		return taskrunner.Invalid("name", "is required")
	case len(name) > MaxNameLength:
		return taskrunner.Invalid("name", "must be at most %d characters", MaxNameLength)
	case !nameRule.MatchString(name):
		return taskrunner.Invalid("name", "must be a lowercase letter followed by lowercase letters, digits and '_'")
	case strings.HasPrefix(name, ReservedPrefix):
		return taskrunner.Invalid("name", "must not start with %s, the prefix of taskrunner's own jobs", ReservedPrefix)
	}
	return nil
}

// Schema is a type's params_schema, compiled: what a task's params are
// validated against.
type Schema struct {
	schema *jsonschema.Schema
}

// schemaURL is where a type's schema is said to live: only to name it, as
// no schema is ever loaded from anywhere.
func schemaURL(name string) string { return "taskrunner:///task-types/" + name + ".json" }

// CompileSchema compiles raw, a JSON Schema (draft 2020-12 unless its
// $schema names another), for the type name. It refuses, as
// task_rejected_invalid_params naming params_schema, a schema over
// MaxSchemaBytes, one that is not a JSON object, one the library does
// not compile, and one whose $ref points outside it: no schema is loaded
// from a file or the network.
func CompileSchema(name string, raw json.RawMessage) (*Schema, error) {
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) == 0:
		return nil, taskrunner.Invalid("params_schema", "is required")
	case len(trimmed) > MaxSchemaBytes:
		return nil, taskrunner.Invalid("params_schema", "must be at most %d bytes", MaxSchemaBytes)
	case trimmed[0] != '{':
		return nil, taskrunner.Invalid("params_schema", "must be a JSON object (a JSON Schema)")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(trimmed))
	if err != nil {
		return nil, taskrunner.Invalid("params_schema", "is not valid JSON")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// No loader: a $ref to anything but the schema itself (or the drafts'
	// own meta-schemas, which the library embeds) fails to compile.
	c.UseLoader(jsonschema.SchemeURLLoader{})
	url := schemaURL(name)
	if err := c.AddResource(url, doc); err != nil {
		return nil, taskrunner.Invalid("params_schema", "is not a valid JSON Schema")
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "params_schema",
			Message: "params_schema is not a valid JSON Schema: " + schemaErrorText(err, url), Err: err}
	}
	return &Schema{schema: sch}, nil
}

// schemaErrorText is a compile error's text without the schema's
// made-up URL, bounded.
func schemaErrorText(err error, url string) string {
	s := strings.ReplaceAll(err.Error(), url, "")
	s = strings.Join(strings.Fields(s), " ")
	const maxLen = 300
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}

// englishPrinter writes the library's messages.
var englishPrinter = message.NewPrinter(language.English)

// Validate checks params (absent or null: an empty object) against the
// schema and returns them as they are to be stored. A refusal is
// ParamError naming the failing property by its path ("a.b.0"; "" for
// params as a whole), as the library's error locates it.
func (s *Schema) Validate(params json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return nil, ParamError("", "must be a JSON object")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(trimmed))
	if err != nil {
		return nil, ParamError("", "is not valid JSON")
	}
	if _, ok := v.(map[string]any)[idempotencyKeyField]; ok {
		return nil, ParamError(idempotencyKeyField, "is reserved: send an Idempotency-Key header instead")
	}
	if err := s.schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, ParamError("", "is not valid")
		}
		leaf := firstLeaf(ve)
		path := slices.Clone(leaf.InstanceLocation)
		// A missing property is located at its object: name the property.
		if req, ok := leaf.ErrorKind.(*kind.Required); ok && len(req.Missing) > 0 {
			path = append(path, req.Missing[0])
		}
		return nil, ParamError(strings.Join(path, "."), leaf.ErrorKind.LocalizedString(englishPrinter))
	}
	return trimmed, nil
}

// firstLeaf is the first error without causes under ve: the most precise
// failure the library found.
func firstLeaf(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return ve
}

// idempotencyKeyField is where an external task's args carry its
// Idempotency-Key, beside its params.
const idempotencyKeyField = "idempotency_key"

// ExternalArgs are the River args of a task of a type defined at run
// time: its kind is the type's name and its encoded args are its params,
// with the Idempotency-Key it was submitted with, if any, beside them
// (River's unique jobs read that field alone).
type ExternalArgs struct {
	Idempotency
	kind   string
	params json.RawMessage
}

// NewExternalArgs are the args of a task of type kind with params, a JSON
// object Schema.Validate accepted.
func NewExternalArgs(kind string, params json.RawMessage) ExternalArgs {
	return ExternalArgs{kind: kind, params: params}
}

// Kind is the type's name.
func (a ExternalArgs) Kind() string { return a.kind }

// MarshalJSON is the params, with the idempotency key added when there is
// one.
func (a ExternalArgs) MarshalJSON() ([]byte, error) {
	if a.IdempotencyKey == "" {
		return a.params, nil
	}
	key, err := json.Marshal(a.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	body := bytes.TrimSpace(a.params)
	body = bytes.TrimSpace(body[1 : len(body)-1])
	out := make([]byte, 0, len(body)+len(key)+24)
	out = append(out, `{"`+idempotencyKeyField+`":`...)
	out = append(out, key...)
	if len(body) > 0 {
		out = append(append(out, ','), body...)
	}
	return append(out, '}'), nil
}
