package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/internal/quickjson"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/task"
)

// encodeJSON encodes v as the API does: without escaping HTML.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeJSON writes v as the response body with status, encoded in a
// pooled buffer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer putEncodeBuffer(buf)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Cannot happen for the API's own types; answer in the error shape anyway.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"code":"internal_error","message":"the response could not be encoded","request_id":""}}` + "\n"))
		return
	}
	writeEncoded(w, status, buf.Bytes()) // Encode ends it with a newline
}

// writeEncoded writes body, JSON ending with a newline, as the response
// body with status.
func writeEncoded(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeTaskViews writes views as writeJSON writes them, encoded by
// appendTaskView: one, or under "tasks" when batch. A view it leaves to
// encoding/json sends them all to writeJSON.
func writeTaskViews(w http.ResponseWriter, status int, batch bool, views ...taskView) {
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer putEncodeBuffer(buf)
	b := buf.AvailableBuffer()
	if batch {
		b = append(b, `{"tasks":[`...)
	}
	for i := range views {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendTaskView(b, &views[i]); !ok {
			if batch {
				writeJSON(w, status, batchBody{Tasks: views})
			} else {
				writeJSON(w, status, views[0])
			}
			return
		}
	}
	if batch {
		b = append(b, "]}"...)
	}
	b = append(b, '\n')
	buf.Write(b) // keeps what it grew to for the next answer
	writeEncoded(w, status, buf.Bytes())
}

// encodeBuffers hold the responses writeJSON encodes.
var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer put back in encodeBuffers: a page
// of large tasks is let go rather than kept.
const maxPooledBuffer = 256 << 10

func putEncodeBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBuffer {
		return
	}
	buf.Reset()
	encodeBuffers.Put(buf)
}

// requireJSON refuses a request body whose Content-Type is not JSON (none
// is taken as JSON).
func requireJSON(r *http.Request) error {
	// The usual type is taken without parsing it.
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &taskrunner.Error{Code: taskrunner.CodeUnsupportedMediaType,
				Message: "send the body as application/json"}
		}
	}
	return nil
}

// readBody reads a JSON request body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if err := requireJSON(r); err != nil {
		return nil, err
	}
	if r.ContentLength > limit {
		return nil, bodyTooLarge(limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, bodyTooLarge(tooLarge.Limit)
		}
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body could not be read", Err: err}
	}
	return body, nil
}

// decodeStrict decodes one JSON object from body into v: unknown fields and
// trailing data are refused. Syntax errors are invalid_json; a field of the
// wrong type or unknown, or holding what cannot be stored (checkStorable),
// is task_rejected_invalid_params naming the field.
func decodeStrict(body []byte, v any) error {
	return decodeStrictQuick(body, v, nil)
}

// decodeStrictQuick is decodeStrict, trying quick first on a body that is
// storable: quick decodes the body into v without reflection and reports
// true, or reports false, leaving v as it was, for a body it does not
// take, which encoding/json decodes (or refuses).
func decodeStrictQuick(body []byte, v any, quick func(trimmed []byte) bool) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body is empty; send a JSON object"}
	}
	if trimmed[0] != '{' {
		return &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body must be a JSON object"}
	}
	// Before decoding, so an unknown field is never named with a NUL in it.
	if err := checkStorable(trimmed); err != nil {
		return err
	}
	if quick != nil && quick(trimmed) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body has data after the JSON object"}
	}
	return nil
}

// checkStorable refuses a JSON body holding a string value or key that
// PostgreSQL cannot store (a NUL, a lone surrogate escape, bytes that are
// not UTF-8), at any depth, naming its field: "params.msg",
// "tasks[2].params.msg". Every JSON request body goes through it; a
// decoder that streams its body can call it on each part it reads whole.
func checkStorable(doc []byte) error {
	p := storable.Check(doc)
	if p == nil {
		return nil
	}
	field, what := p.Path, p.Path
	switch {
	case p.Key && field == "":
		field, what = "body", "a key of the body"
	case p.Key:
		what = "a key of " + field
	case field == "":
		field, what = "body", "the body"
	}
	return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field,
		Message: what + " " + p.Reason + ", which cannot be stored"}
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field,
			Message: fmt.Sprintf("%s has the wrong type: got JSON %s", field, typeErr.Value)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := strings.Trim(name, `"`)
		return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field,
			Message: fmt.Sprintf("unknown field %q", field)}
	}
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) {
		// run_at is the only time a request carries.
		return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "run_at",
			Message: `run_at must be an RFC 3339 time such as "2026-01-02T15:04:05Z"`}
	}
	return &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body is not valid JSON: " + jsonSyntaxMessage(err)}
}

// jsonSyntaxMessage describes a decoding error without echoing the input.
func jsonSyntaxMessage(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "malformed"
}

// decodeTaskRequest decodes a POST /tasks body.
func decodeTaskRequest(body []byte) (*task.Request, error) {
	var req task.Request
	if err := decodeStrictQuick(body, &req, func(b []byte) bool {
		rest, ok := quickTaskRequest(b, &req)
		return ok && len(quickjson.SkipSpace(rest)) == 0
	}); err != nil {
		return nil, err
	}
	return &req, nil
}

// decodeBatchRequest decodes a POST /tasks/batch body.
func decodeBatchRequest(body []byte) (*batchRequest, error) {
	var req batchRequest
	if err := decodeStrictQuick(body, &req, func(b []byte) bool { return quickBatchRequest(b, &req) }); err != nil {
		return nil, err
	}
	return &req, nil
}

// quickBatchRequest decodes {"tasks": [task, ...]} into req, each task
// as quickTaskRequest takes it; false, with req as it was, for any other
// body.
func quickBatchRequest(b []byte, req *batchRequest) bool {
	b, ok := quickjson.ObjectKey(b, "tasks")
	if !ok || len(b) == 0 || b[0] != '[' {
		return false
	}
	// Fifty tasks of "type" and "params": one allocation for them all.
	tasks := make([]task.Request, 0, min(bytes.Count(b, []byte(`"type"`)), 256))
	b = quickjson.SkipSpace(b[1:])
	for len(b) > 0 && b[0] != ']' {
		if len(tasks) > 0 {
			if b[0] != ',' {
				return false
			}
			b = quickjson.SkipSpace(b[1:])
		}
		var t task.Request
		if b, ok = quickTaskRequest(b, &t); !ok {
			return false
		}
		tasks = append(tasks, t)
		b = quickjson.SkipSpace(b)
	}
	if len(b) == 0 || len(tasks) == 0 {
		return false // an empty batch is refused by the slow path's rules
	}
	b = quickjson.SkipSpace(b[1:])
	if len(b) == 0 || b[0] != '}' || len(quickjson.SkipSpace(b[1:])) != 0 {
		return false
	}
	req.Tasks = tasks
	return true
}

// quickTaskRequest decodes the task request b starts with into req when
// it is an object of "type", a string without escapes, and "params", an
// object, and returns what follows it; false for any other request
// (another member, a key in another case, an escape), which
// encoding/json decodes. The params are checked as JSON and not copied.
func quickTaskRequest(b []byte, req *task.Request) (rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var r task.Request
	b = quickjson.SkipSpace(b[1:])
	for first := true; ; first = false {
		if len(b) > 0 && b[0] == '}' && first {
			break
		}
		var key, value []byte
		if key, b, ok = quickjson.PlainString(b); !ok {
			return nil, false
		}
		if b = quickjson.SkipSpace(b); len(b) == 0 || b[0] != ':' {
			return nil, false
		}
		b = quickjson.SkipSpace(b[1:])
		switch string(key) {
		case "type":
			if value, b, ok = quickjson.PlainString(b); !ok {
				return nil, false
			}
			r.Type = string(value)
		case "params":
			n := quickjson.ObjectLength(b)
			if n == 0 || !json.Valid(b[:n]) {
				return nil, false
			}
			r.Params, b = json.RawMessage(b[:n:n]), b[n:]
		default:
			return nil, false
		}
		b = quickjson.SkipSpace(b)
		if len(b) > 0 && b[0] == ',' {
			b = quickjson.SkipSpace(b[1:])
			continue
		}
		if len(b) == 0 || b[0] != '}' {
			return nil, false
		}
		break
	}
	*req = r
	return b[1:], true
}
