package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/taskrunner/taskrunner"
)

// codeStatus is the HTTP status of every code taskrunner has (a test
// fails when a code of taskrunner.Codes is missing). The codes of a
// task's failure are shown in the task's error, not as an answer's status;
// they have the status they would have if a handler ever returned one.
var codeStatus = map[taskrunner.Code]int{
	taskrunner.CodeInvalidJSON:          http.StatusBadRequest,
	taskrunner.CodeInvalidParams:        http.StatusBadRequest,
	taskrunner.CodeUnknownTaskType:      http.StatusBadRequest,
	taskrunner.CodeBatchTooLarge:        http.StatusRequestEntityTooLarge,
	taskrunner.CodeBodyTooLarge:         http.StatusRequestEntityTooLarge,
	taskrunner.CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	taskrunner.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	taskrunner.CodeNotFound:             http.StatusNotFound,
	taskrunner.CodeTaskAlreadyFinished:  http.StatusConflict,
	taskrunner.CodeRangeNotSatisfiable:  http.StatusRequestedRangeNotSatisfiable,
	taskrunner.CodePreconditionFailed:   http.StatusPreconditionFailed,
	taskrunner.CodeUnauthorized:         http.StatusUnauthorized,
	taskrunner.CodeForbidden:            http.StatusForbidden,
	taskrunner.CodeCrossOriginRequest:   http.StatusForbidden,
	taskrunner.CodeRateLimitExceeded:    http.StatusTooManyRequests,
	taskrunner.CodeTooManyWaiters:       http.StatusServiceUnavailable,
	taskrunner.CodeTooManyUploads:       http.StatusServiceUnavailable,
	taskrunner.CodeUploadStalled:        http.StatusRequestTimeout,
	taskrunner.CodeScheduleExists:       http.StatusConflict,
	taskrunner.CodeTooManySchedules:     http.StatusConflict,
	taskrunner.CodeCallbacksDisabled:    http.StatusNotFound,
	taskrunner.CodeScheduleRateExceeded: http.StatusConflict,
	taskrunner.CodeScheduleTaskTooLarge: http.StatusRequestEntityTooLarge,
	taskrunner.CodeTooManyBulkActions:   http.StatusTooManyRequests,
	taskrunner.CodeBulkCountTimeout:     http.StatusUnprocessableEntity,
	taskrunner.CodeTaskTypeInUse:        http.StatusConflict,
	taskrunner.CodeTaskTypeReserved:     http.StatusConflict,
	taskrunner.CodeTooManyTaskTypes:     http.StatusConflict,

	taskrunner.CodeArtifactInvalid:      http.StatusBadRequest,
	taskrunner.CodeArtifactSizeExceeded: http.StatusRequestEntityTooLarge,
	taskrunner.CodeTooManyArtifacts:     http.StatusConflict,

	taskrunner.CodeInvalidURL:        http.StatusBadRequest,
	taskrunner.CodeDomainNotAllowed:  http.StatusBadRequest,
	taskrunner.CodePortNotAllowed:    http.StatusBadRequest,
	taskrunner.CodeAddressNotAllowed: http.StatusBadRequest,

	taskrunner.CodeTaskFailed:                 http.StatusInternalServerError,
	taskrunner.CodeTaskCancelled:              http.StatusConflict,
	taskrunner.CodeTaskRuntimeExceeded:        http.StatusGatewayTimeout,
	taskrunner.CodeTaskInterrupted:            http.StatusServiceUnavailable,
	taskrunner.CodeWorkerLost:                 http.StatusServiceUnavailable,
	taskrunner.CodeTooManyRedirects:           http.StatusBadGateway,
	taskrunner.CodeFetchTimeout:               http.StatusGatewayTimeout,
	taskrunner.CodeFetchFailed:                http.StatusBadGateway,
	taskrunner.CodeFetchHTTPError:             http.StatusBadGateway,
	taskrunner.CodeSearchFailed:               http.StatusBadGateway,
	taskrunner.CodeSearchProviderUnavailable:  http.StatusBadGateway,
	taskrunner.CodeSearchProviderUnauthorized: http.StatusBadGateway,
	taskrunner.CodeSearchProviderRateLimited:  http.StatusBadGateway,
	taskrunner.CodeSearchProviderTimeout:      http.StatusGatewayTimeout,
	taskrunner.CodeSearchProviderBadResponse:  http.StatusBadGateway,

	taskrunner.CodeDependencyUnavailable: http.StatusServiceUnavailable,
	taskrunner.CodeInternal:              http.StatusInternalServerError,
}

// statusOf is the HTTP status of code; 500 for a code without one.
func statusOf(code taskrunner.Code) int {
	if status, ok := codeStatus[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// asError turns any error into a *taskrunner.Error: the first in its
// chain, or for any other error an internal_error (dependency_unavailable
// when the request ran out of time) whose message says nothing of the
// cause, which it keeps for the log.
func asError(err error) *taskrunner.Error {
	var e *taskrunner.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return taskrunner.Unavailable(err)
	}
	return &taskrunner.Error{Code: taskrunner.CodeInternal, Message: taskrunner.ErrorMessage(err), Err: err}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      taskrunner.Code `json:"code"`
	Message   string          `json:"message"`
	Field     string          `json:"field,omitempty"`
	RequestID string          `json:"request_id"`
}

// writeError logs err (4xx at info, 5xx at error with the cause) and writes
// the one JSON error shape, with the status of its code.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	e := asError(err)
	status := statusOf(e.Code)
	reqID := middleware.GetReqID(r.Context())
	attrs := []slog.Attr{
		slog.String("event", "http_error"), slog.String("code", string(e.Code)), slog.Int("status", status),
		slog.String("method", logMethod(r)), slog.String("path", logPath(r)), slog.String("request_id", reqID),
	}
	if status >= 500 {
		if e.Err != nil {
			attrs = append(attrs, slog.String("cause", e.Err.Error()))
		}
		logger.LogAttrs(r.Context(), slog.LevelError, e.Message, attrs...)
	} else {
		logger.LogAttrs(r.Context(), slog.LevelInfo, e.Message, attrs...)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field, RequestID: reqID}})
}
