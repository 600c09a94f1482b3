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
	"github.com/taskrunner/taskrunner/internal/wire"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/task"
)

// encodeJSON encodes v as the API does: without escaping HTML.
func encodeJSON(v any) ([]byte, error) { return wire.Marshal(v) }

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

// taskViews writes task views as writeJSON does, without reflection on
// each: a batch answer holds fifty.
var taskViews = wire.NewEncoder[taskView]()

// writeTaskViews writes views as writeJSON writes them, encoded by
// taskViews: one, or under "tasks" when batch. A view it leaves to
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
		if b, ok = taskViews.Append(b, &views[i]); !ok {
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
	trimmed, err := strictBody(body)
	if err != nil {
		return err
	}
	return decodeStrictJSON(trimmed, v)
}

// decodeStrictFast is decodeStrict, trying fast first: it decodes a
// plain body without reflection, and leaves any other to encoding/json,
// which decodes (or refuses) it the same.
func decodeStrictFast[T any](body []byte, v *T, fast *wire.Decoder[T]) error {
	trimmed, err := strictBody(body)
	if err != nil {
		return err
	}
	if fast.Decode(trimmed, v) {
		return nil
	}
	return decodeStrictJSON(trimmed, v)
}

// strictBody is body without the whitespace around it, when it is an
// object that can be stored.
func strictBody(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body is empty; send a JSON object"}
	}
	if trimmed[0] != '{' {
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body must be a JSON object"}
	}
	// Before decoding, so an unknown field is never named with a NUL in it.
	if err := checkStorable(trimmed); err != nil {
		return nil, err
	}
	return trimmed, nil
}

// decodeStrictJSON decodes the object trimmed with encoding/json.
func decodeStrictJSON(trimmed []byte, v any) error {
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

// The request bodies read on every enqueue, without reflection when
// plain.
var (
	taskRequests  = wire.NewDecoder[task.Request]()
	batchRequests = wire.NewDecoder[batchRequest]()
)

// decodeTaskRequest decodes a POST /tasks body.
func decodeTaskRequest(body []byte) (*task.Request, error) {
	var req task.Request
	if err := decodeStrictFast(body, &req, taskRequests); err != nil {
		return nil, err
	}
	return &req, nil
}

// decodeBatchRequest decodes a POST /tasks/batch body.
func decodeBatchRequest(body []byte) (*batchRequest, error) {
	var req batchRequest
	if err := decodeStrictFast(body, &req, batchRequests); err != nil {
		return nil, err
	}
	return &req, nil
}
