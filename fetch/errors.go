package fetch

import "errors"

// Error codes. Every error this package returns is an *Error with one of
// them.
const (
	// CodeInvalidURL: not an absolute http(s) URL, malformed host, userinfo,
	// too long. From CheckURL and redirects.
	CodeInvalidURL = "invalid_url"
	// CodeDomainNotAllowed: the host is not allowed by
	// FETCH_DOMAIN_ALLOWLIST. From CheckURL and redirects.
	CodeDomainNotAllowed = "domain_not_allowed"
	// CodePortNotAllowed: the port is neither 80, 443 nor one of
	// Config.AllowedPorts. From CheckURL, redirects and dialing.
	CodePortNotAllowed = "port_not_allowed"
	// CodeAddressNotAllowed: the host is, or resolves to, a non-public
	// address (loopback, private, link-local, metadata, ...). From CheckURL
	// for IP literals and "localhost", and from dialing for names.
	CodeAddressNotAllowed = "address_not_allowed"
	// CodeTooManyRedirects: more than Config.MaxRedirects redirects.
	CodeTooManyRedirects = "too_many_redirects"
	// CodeSizeExceeded: the body is larger than Config.MaxBytes, declared
	// or read. Such errors also wrap ErrTooLarge.
	CodeSizeExceeded = "artifact_size_exceeded"
	// CodeTimeout: the context's deadline or a transport timeout passed.
	// When the context expired the error wraps context.DeadlineExceeded.
	CodeTimeout = "fetch_timeout"
	// CodeFailed: no usable answer: the name does not resolve, the
	// connection or TLS failed, the fetch was cancelled (then it wraps
	// context.Canceled), the connection broke while reading.
	CodeFailed = "fetch_failed"
)

// ErrTooLarge is wrapped by every error about a body larger than
// Config.MaxBytes, whether Fetch saw it in Content-Length or Response.Body
// found it while reading.
var ErrTooLarge = errors.New("response body exceeds the size limit")

// Error is a refused or failed fetch. Its Message is safe to show to the
// client that submitted the URL: it may name the host and the class of an
// address, never a resolved address, the path, the query or server
// internals. The underlying cause, if any, is available to errors.Is and
// errors.As (and to logs) through Unwrap.
type Error struct {
	// Code is a stable snake_case code, one of the Code constants.
	Code string
	// Message says what was wrong in words a client can act on.
	Message string
	cause   error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the underlying cause: ErrTooLarge, a context error, a
// network error, or nil.
func (e *Error) Unwrap() error { return e.cause }

// Retryable says whether the same fetch may succeed later: true for
// timeouts and network failures, false for refused URLs, redirect loops and
// oversized bodies.
func (e *Error) Retryable() bool {
	return e.Code == CodeTimeout || e.Code == CodeFailed
}

// Rejected says whether the URL itself was refused (invalid_url,
// domain_not_allowed, port_not_allowed, address_not_allowed): a client
// error, never worth retrying. Every error CheckURL returns is one.
func (e *Error) Rejected() bool {
	switch e.Code {
	case CodeInvalidURL, CodeDomainNotAllowed, CodePortNotAllowed, CodeAddressNotAllowed:
		return true
	}
	return false
}

func errorf(code, msg string, cause error) *Error {
	return &Error{Code: code, Message: msg, cause: cause}
}
