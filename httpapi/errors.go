package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/task"
)

// Error codes of the API's own (task's codes are in package task).
const (
	CodeInvalidJSON           = "invalid_json"
	CodeBodyTooLarge          = "body_too_large"
	CodeUnsupportedMediaType  = "unsupported_media_type"
	CodeDependencyUnavailable = "dependency_unavailable"
	CodeInternal              = "internal_error"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeRangeNotSatisfiable   = "range_not_satisfiable"
	CodePreconditionFailed    = "precondition_failed"
)

// Error is an API error: the status, the public code and message, and the
// internal cause that only the log sees.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// statusOfCode maps the domain's stable codes to HTTP statuses.
var statusOfCode = map[string]int{
	task.CodeInvalidParams:   http.StatusBadRequest,
	task.CodeUnknownType:     http.StatusBadRequest,
	task.CodeNotFound:        http.StatusNotFound,
	task.CodeAlreadyFinished: http.StatusConflict,
	task.CodeBatchTooLarge:   http.StatusRequestEntityTooLarge,
}

// asError turns any error into an API Error. Unknown errors become 500s
// (or 503s when a dependency is down) whose message says nothing of the
// cause.
func asError(err error) *Error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var artErr *artifact.Error
	if errors.As(err, &artErr) {
		status := map[string]int{artifact.CodeSizeExceeded: http.StatusRequestEntityTooLarge, artifact.CodeNotFound: http.StatusNotFound}[artErr.Code]
		if status == 0 {
			status = http.StatusBadRequest
		}
		return &Error{Status: status, Code: artErr.Code, Message: artErr.Message, Field: artErr.Field}
	}
	var taskErr *task.Error
	if errors.As(err, &taskErr) {
		status, ok := statusOfCode[taskErr.Code]
		if !ok {
			status = http.StatusBadRequest
		}
		return &Error{Status: status, Code: taskErr.Code, Message: taskErr.Message, Field: taskErr.Field}
	}
	if db.IsUnavailable(err) || errors.Is(err, artifact.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeDependencyUnavailable,
			Message: "a service taskrunner depends on is unavailable; retry shortly", Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "internal error; the server log has the details", Cause: err}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
}

// writeError logs err (4xx at info, 5xx at error with the cause) and writes
// the one JSON error shape.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	e := asError(err)
	reqID := middleware.GetReqID(r.Context())
	attrs := []slog.Attr{
		slog.String("event", "http_error"), slog.String("code", e.Code), slog.Int("status", e.Status),
		slog.String("method", logMethod(r)), slog.String("path", logPath(r)), slog.String("request_id", reqID),
	}
	if e.Status >= 500 {
		if e.Cause != nil {
			attrs = append(attrs, slog.String("cause", e.Cause.Error()))
		}
		logger.LogAttrs(r.Context(), slog.LevelError, e.Message, attrs...)
	} else {
		logger.LogAttrs(r.Context(), slog.LevelInfo, e.Message, attrs...)
	}
	writeJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field, RequestID: reqID}})
}
