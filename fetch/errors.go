package fetch

import (
	"errors"

	"github.com/taskrunner/taskrunner"
)

// Every error this package returns is a *taskrunner.Error with one of these
// codes:
//
//   - invalid_url: not an absolute http(s) URL, malformed host, userinfo,
//     too long. From CheckURL and redirects.
//   - domain_not_allowed: the host is not allowed by
//     FETCH_DOMAIN_ALLOWLIST. From CheckURL and redirects.
//   - port_not_allowed: the port is neither 80, 443 nor one of
//     Config.AllowedPorts. From CheckURL, redirects and dialing.
//   - address_not_allowed: the host is, or resolves to, a non-public
//     address (loopback, private, link-local, metadata, ...), or its name
//     does not resolve. From CheckURL for IP literals and "localhost"
//     (the message names the class), and from dialing for names: then the
//     message is UnreachableMessage whether the name does not resolve or
//     resolves to a non-public address, so that no client learns which
//     names exist inside the network; the fetch_host_refused log line and
//     the error's cause tell them apart.
//   - too_many_redirects: more than Config.MaxRedirects redirects.
//   - artifact_size_exceeded: the body is larger than Config.MaxBytes,
//     declared or read. Such errors also wrap ErrTooLarge.
//   - fetch_timeout: the context's deadline or a transport timeout passed.
//     When the context expired the error wraps context.DeadlineExceeded.
//   - fetch_failed: no usable answer: the resolver could not answer (a
//     timeout or a server failure, not a name that does not exist), the
//     connection or TLS failed, the fetch was cancelled (then it wraps
//     context.Canceled), the connection broke while reading.
//
// An error's Message is safe to show to the client that submitted the URL:
// it may name the host the client wrote and the class of an IP address
// the client wrote, never a resolved address or its class, whether a
// name resolves, the path, the query or server internals. The underlying cause,
// if any, is available to errors.Is and errors.As (and to logs) through
// Unwrap.

// ErrTooLarge is wrapped by every error about a body larger than
// Config.MaxBytes, whether Fetch saw it in Content-Length or Response.Body
// found it while reading.
var ErrTooLarge = errors.New("response body exceeds the size limit")

// Retryable says whether a fetch that failed with code may succeed later:
// true for timeouts and network failures, false for refused URLs, redirect
// loops and oversized bodies.
func Retryable(code taskrunner.Code) bool {
	return code == taskrunner.CodeFetchTimeout || code == taskrunner.CodeFetchFailed
}

// Rejected says whether code is a refusal of the URL itself (invalid_url,
// domain_not_allowed, port_not_allowed, address_not_allowed): a client
// error, never worth retrying. Every error CheckURL returns is one.
func Rejected(code taskrunner.Code) bool {
	switch code {
	case taskrunner.CodeInvalidURL, taskrunner.CodeDomainNotAllowed, taskrunner.CodePortNotAllowed, taskrunner.CodeAddressNotAllowed:
		return true
	}
	return false
}

func errorf(code taskrunner.Code, msg string, cause error) *taskrunner.Error {
	return &taskrunner.Error{Code: code, Message: msg, Err: cause}
}
