package tasktype

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/taskrunner/taskrunner"
)

// ParamError is the refusal of a param: task_rejected_invalid_params,
// naming the param (field, "" for params as a whole) and what is wrong
// with it. The task service names the field in full (params.seconds, or
// seconds where the params are the request body) and starts the message
// with it.
func ParamError(field, message string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field, Message: message}
}

// DecodeParams decodes params strictly into v: an object, no unknown
// fields, no trailing data; absent or null params are an empty object.
// Its errors are ParamError's, naming the field.
func DecodeParams(params json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return ParamError("", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsErrorFrom(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ParamError("", "unexpected data after the object")
	}
	return nil
}

func paramsErrorFrom(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return ParamError(typeErr.Field, "must be a "+jsonTypeName(typeErr.Type.Kind().String()))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return ParamError(strings.Trim(name, `"`), "is not a known param")
	}
	return ParamError("", "is not valid: "+err.Error())
}

func jsonTypeName(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "string":
		return "string"
	case goKind == "bool":
		return "boolean"
	case goKind == "slice":
		return "list"
	default:
		return "JSON " + goKind
	}
}
