package taskrunner

import (
	"errors"
	"fmt"
)

// Code is a stable error code: what a client branches on, and what the
// runs table stores. Its JSON is its string.
type Code string

// Every stable error code taskrunner gives, in one place. A code names what
// went wrong for good: clients branch on it, the runs table stores it,
// codes below gives each its public message, and httpapi maps each to an
// HTTP status in one table (a test there fails when a code has no status).
const (
	// Refusals of a request.

	CodeInvalidJSON          Code = "invalid_json"
	CodeInvalidParams        Code = "task_rejected_invalid_params"
	CodeUnknownTaskType      Code = "unknown_task_type"
	CodeBatchTooLarge        Code = "batch_too_large"
	CodeBodyTooLarge         Code = "body_too_large"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeNotFound             Code = "not_found"
	CodeTaskAlreadyFinished  Code = "task_already_finished"
	CodeRangeNotSatisfiable  Code = "range_not_satisfiable"
	CodePreconditionFailed   Code = "precondition_failed"
	CodeUnauthorized         Code = "unauthorized"
	// CodeForbidden: the key is valid, but its tenant may not use the
	// route (River UI and /metrics are for admins).
	CodeForbidden          Code = "forbidden"
	CodeCrossOriginRequest Code = "cross_origin_request"
	CodeRateLimitExceeded  Code = "rate_limit_exceeded"
	// CodeTooManyWaiters: the process holds its maximum of requests
	// waiting on tasks (MAX_WAITERS).
	CodeTooManyWaiters Code = "too_many_waiters"
	// CodeTooManyUploads: the process receives as many artifact uploads as
	// it may at once (MAX_CONCURRENT_UPLOADS).
	CodeTooManyUploads Code = "too_many_uploads"
	// CodeUploadStalled: an upload's body sent nothing for
	// UPLOAD_IDLE_TIMEOUT_SECONDS, and was cut.
	CodeUploadStalled Code = "upload_stalled"
	// CodeScheduleExists: the tenant already has a schedule of that name.
	CodeScheduleExists Code = "schedule_exists"
	// CodeTooManySchedules: the tenant has its maximum of schedules.
	CodeTooManySchedules Code = "too_many_schedules"
	// CodeCallbacksDisabled: callbacks are off on this server (no
	// CALLBACK_SECRET), so there is no callback secret to read or rotate.
	CodeCallbacksDisabled Code = "callbacks_disabled"
	// CodeScheduleRateExceeded: with the schedule created or resumed, the
	// tenant's active schedules would tick more often a minute than its
	// tasks_per_minute.
	CodeScheduleRateExceeded Code = "schedule_rate_exceeded"
	// CodeScheduleTaskTooLarge: a schedule's task is over
	// SCHEDULE_MAX_TASK_BYTES as stored.
	CodeScheduleTaskTooLarge Code = "schedule_task_too_large"
	// CodeTooManyBulkActions: the tenant runs as many bulk actions at
	// once as it may (BULK_MAX_CONCURRENT).
	CodeTooManyBulkActions Code = "too_many_bulk_actions"
	// CodeBulkCountTimeout: counting or finding the tasks of a bulk
	// action's filter took longer than BULK_COUNT_TIMEOUT_SECONDS.
	CodeBulkCountTimeout Code = "bulk_count_timeout"
	// CodeTaskTypeInUse: an external task type still has tasks waiting
	// or running, so it is not deleted (unless forced).
	CodeTaskTypeInUse Code = "task_type_in_use"
	// CodeTaskTypeReserved: the name of a task type defined at run time
	// is a built-in type's.
	CodeTaskTypeReserved Code = "task_type_reserved"
	// CodeTooManyTaskTypes: the server holds its maximum of task types
	// defined at run time.
	CodeTooManyTaskTypes Code = "too_many_task_types"

	// Refusals of an artifact.

	CodeArtifactInvalid Code = "artifact_rejected_invalid"
	// CodeArtifactSizeExceeded: an artifact, or a fetched body, over
	// TASK_MAX_ARTIFACT_MB.
	CodeArtifactSizeExceeded Code = "artifact_size_exceeded"
	// CodeTooManyArtifacts: a new artifact for a task that has
	// TASK_MAX_ARTIFACTS already.
	CodeTooManyArtifacts Code = "too_many_artifacts"

	// A URL a fetch task may not fetch: refused when the task is submitted
	// (domain_not_allowed) or when the fetch meets it (a redirect, a name
	// resolving to a private address).

	CodeInvalidURL        Code = "invalid_url"
	CodeDomainNotAllowed  Code = "domain_not_allowed"
	CodePortNotAllowed    Code = "port_not_allowed"
	CodeAddressNotAllowed Code = "address_not_allowed"

	// Failures of a task, recorded on its run and shown in its error.

	CodeTaskFailed          Code = "task_failed"
	CodeTaskCancelled       Code = "task_cancelled"
	CodeTaskRuntimeExceeded Code = "task_runtime_exceeded"
	// CodeTaskInterrupted: the worker stopped during the attempt; the
	// task went back to the queue.
	CodeTaskInterrupted Code = "task_interrupted"
	// CodeWorkerLost is recorded (by SQL) on an attempt whose worker died.
	CodeWorkerLost       Code = "worker_lost"
	CodeTooManyRedirects Code = "too_many_redirects"
	CodeFetchTimeout     Code = "fetch_timeout"
	CodeFetchFailed      Code = "fetch_failed"
	CodeFetchHTTPError   Code = "fetch_http_error"
	CodeSearchFailed     Code = "search_failed"
	// Failures of one search provider, reported per source in a search's
	// result; search_provider_unavailable is also a search task's failure
	// when search is not configured.
	CodeSearchProviderUnavailable  Code = "search_provider_unavailable"
	CodeSearchProviderUnauthorized Code = "search_provider_unauthorized"
	CodeSearchProviderRateLimited  Code = "search_provider_rate_limited"
	CodeSearchProviderTimeout      Code = "search_provider_timeout"
	CodeSearchProviderBadResponse  Code = "search_provider_bad_response"

	// Failures of taskrunner itself.

	// CodeDependencyUnavailable: PostgreSQL, Redis or MinIO cannot be
	// reached; retrying shortly may succeed.
	CodeDependencyUnavailable Code = "dependency_unavailable"
	CodeInternal              Code = "internal_error"
)

// codeInfo is what taskrunner says of a code besides its name.
type codeInfo struct {
	// message is what clients are shown of a failure with the code whose
	// error carries no public message of its own (a task's run records
	// only the code); "" for a code whose errors always carry one.
	message string
}

// codes is every code of the constants above, with what it says: a new
// code is added there and here (a test fails when one is missing), and
// httpapi gives each an HTTP status.
var codes = map[Code]codeInfo{
	CodeInvalidJSON:          {},
	CodeInvalidParams:        {},
	CodeUnknownTaskType:      {},
	CodeBatchTooLarge:        {},
	CodeBodyTooLarge:         {},
	CodeUnsupportedMediaType: {},
	CodeMethodNotAllowed:     {},
	CodeNotFound:             {},
	CodeTaskAlreadyFinished:  {},
	CodeRangeNotSatisfiable:  {},
	CodePreconditionFailed:   {},
	CodeUnauthorized:         {},
	CodeForbidden:            {},
	CodeCrossOriginRequest:   {},
	CodeRateLimitExceeded:    {},
	CodeTooManyWaiters:       {},
	CodeTooManyUploads:       {},
	CodeUploadStalled:        {},
	CodeScheduleExists:       {},
	CodeTooManySchedules:     {},
	CodeCallbacksDisabled:    {},
	CodeScheduleRateExceeded: {},
	CodeScheduleTaskTooLarge: {},
	CodeTooManyBulkActions:   {},
	CodeBulkCountTimeout:     {},
	CodeTaskTypeInUse:        {"the task type has tasks waiting or running; delete it with force=true to leave them"},
	CodeTaskTypeReserved:     {"the name is a built-in task type's"},
	CodeTooManyTaskTypes:     {"the server holds its maximum of task types defined at run time"},

	CodeArtifactInvalid:      {"the result could not be stored as an artifact"},
	CodeArtifactSizeExceeded: {"the body is larger than TASK_MAX_ARTIFACT_MB"},
	CodeTooManyArtifacts:     {},

	CodeInvalidURL:        {"the URL cannot be fetched"},
	CodeDomainNotAllowed:  {"the URL's domain is not allowed by FETCH_DOMAIN_ALLOWLIST"},
	CodePortNotAllowed:    {"the URL's port is not allowed (FETCH_ALLOWED_PORTS)"},
	CodeAddressNotAllowed: {"the URL's host does not resolve, or is or resolves to an address that may not be fetched"},

	CodeTaskFailed:                 {"the task failed; the server log has the details"},
	CodeTaskCancelled:              {"the task was cancelled"},
	CodeTaskRuntimeExceeded:        {"the task ran longer than its timeout and was killed"},
	CodeTaskInterrupted:            {"the worker stopped during the attempt; the task went back to the queue"},
	CodeWorkerLost:                 {"the worker running the attempt stopped without finishing it"},
	CodeTooManyRedirects:           {"the page redirected too many times"},
	CodeFetchTimeout:               {"the page did not answer in time"},
	CodeFetchFailed:                {"the page could not be fetched: the name could not be resolved now, or the connection failed"},
	CodeFetchHTTPError:             {"the server answered with an error status"},
	CodeSearchFailed:               {"every search source failed"},
	CodeSearchProviderUnavailable:  {"search is not available"},
	CodeSearchProviderUnauthorized: {},
	CodeSearchProviderRateLimited:  {},
	CodeSearchProviderTimeout:      {},
	CodeSearchProviderBadResponse:  {},

	CodeDependencyUnavailable: {},
	CodeInternal:              {},
}

// Codes lists every code taskrunner has, in no particular order.
func Codes() []Code {
	out := make([]Code, 0, len(codes))
	for c := range codes {
		out = append(out, c)
	}
	return out
}

// PublicMessage is what clients are shown of a failure with code: err's
// own public message (its *Error's Message, when that Error has code),
// else code's fixed message, else task_failed's. Never the error's text,
// which may name hosts, keys, queries or types. err may be nil.
func PublicMessage(code Code, err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code == code && e.Message != "" {
		return e.Message
	}
	if m := codes[code].message; m != "" {
		return m
	}
	return codes[CodeTaskFailed].message
}

// Error is a failure with a stable code. Message is safe to show a client;
// Err, the internal cause, is for the log only.
type Error struct {
	Code    Code   // one of the Code* constants of error.go
	Message string // safe to show a client
	Field   string // the offending input field, when there is one
	Err     error  // the internal cause; only the log sees it
}

// Error is the whole story, for the log: the code, the message and the
// cause.
func (e *Error) Error() string {
	s := string(e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error whose formatted message is public: format and
// args must name nothing a client may not see.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is the refusal of a bad input field: task_rejected_invalid_params,
// with a message that starts with the field's name.
func Invalid(field, format string, args ...any) *Error {
	return FieldError(CodeInvalidParams, field, format, args...)
}

// FieldError is a refusal with code of a bad input field, with a message
// that starts with the field's name.
func FieldError(code Code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: field + " " + fmt.Sprintf(format, args...)}
}

// Unavailable is err, a failure to reach a service taskrunner depends on,
// as a dependency_unavailable Error.
func Unavailable(err error) *Error {
	return &Error{Code: CodeDependencyUnavailable, Message: "a service taskrunner depends on is unavailable; retry shortly", Err: err}
}

// ErrorCode is the code of err: "" for nil, the Code of the first *Error in
// its chain, CodeInternal for any other error.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage is what a client may be shown of err: "" for nil, the
// Message of the first *Error in its chain, a fixed message saying nothing
// of the cause for any other error.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return internalMessage
}

const internalMessage = "internal error; the server log has the details"
