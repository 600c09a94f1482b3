package httpapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
)

// What this file guards against: clients that send what no honest client
// sends (made-up methods, megabyte paths, forged request ids, stalled or
// oversized bodies, forms posted from other sites).

// Bounds on what reaches a log line.
const (
	// maxLoggedPath is the most of a request's path a log line or error
	// message holds.
	maxLoggedPath = 256
	// maxLoggedMethod is the most of a request's method a log line holds.
	maxLoggedMethod = 32
	// maxRequestIDLength is the longest X-Request-Id taken from a client.
	maxRequestIDLength = 64
)

// Bounds on reading the rest of a body that its handler left unread.
const (
	drainMaxBytes = 4 << 20
	drainMaxTime  = 5 * time.Second
)

// maxHeaderTimeout bounds the time a request's headers may take, however
// long HTTP_READ_TIMEOUT_SECONDS is.
const maxHeaderTimeout = 10 * time.Second

// NewHTTPServer returns the http.Server that serves h in taskrunner's
// processes, with the read deadlines every request gets:
//
//   - the headers must arrive within readTimeout (at most 10 s),
//   - the whole request, headers and body, within readTimeout
//     (HTTP_READ_TIMEOUT_SECONDS): a stalled body fails and its connection
//     is closed,
//   - an idle keep-alive connection is closed after two minutes.
//
// net/http lifts the read deadline once a request's body has been read to
// its end (at once for a request without a body), so long polls and event
// streams, which read nothing more, are not cut short by it. There is no
// write timeout, for the same reason: they write for long.
func NewHTTPServer(h http.Handler, readTimeout time.Duration, logger *slog.Logger) *http.Server {
	if readTimeout <= 0 {
		readTimeout = config.DefaultHTTPReadTimeout
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readTimeout, maxHeaderTimeout),
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.With(slog.String("event", "http_server_error")).Handler(), slog.LevelWarn),
	}
}

// requestID gives every request an id: the client's X-Request-Id when it
// is a short token (1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'), otherwise
// a fresh one. The id is in every log line and error of the request, so a
// client must not be able to fill them with anything else.
func requestID(next http.Handler) http.Handler {
	withID := middleware.RequestID(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if given := r.Header.Get(middleware.RequestIDHeader); given != "" && !isRequestIDToken(given) {
			r.Header.Del(middleware.RequestIDHeader)
		}
		withID.ServeHTTP(w, r)
	})
}

func isRequestIDToken(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// loggable is s made safe for a log line or an error message: at most
// limit bytes, printable characters kept, backslashes, control characters,
// other non-printable ones and invalid UTF-8 escaped Go-style, and a cut
// marked with the length of the whole.
func loggable(s string, limit int) string {
	if out, ok := escapeWithin(s, limit); ok {
		return out
	}
	marker := "...[" + strconv.Itoa(len(s)) + " bytes]"
	out, _ := escapeWithin(s, max(limit-len(marker), 0))
	return out + marker
}

// escapeWithin escapes s as loggable does, stopping before limit bytes;
// ok says all of s fitted.
func escapeWithin(s string, limit int) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			piece = `\\`
		case unicode.IsPrint(r):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRuneToASCII(r)
			piece = q[1 : len(q)-1]
		}
		if b.Len()+len(piece) > limit {
			return b.String(), false
		}
		b.WriteString(piece)
		i += size
	}
	return b.String(), true
}

// logPath is the request's path as log lines and error messages show it.
func logPath(r *http.Request) string { return loggable(r.URL.Path, maxLoggedPath) }

// logMethod is the request's method as log lines show it.
func logMethod(r *http.Request) string { return loggable(r.Method, maxLoggedMethod) }

// crossOrigin refuses state-changing requests (every method but GET, HEAD
// and OPTIONS) that a browser sends from another site, with 403
// cross_origin_request: http.CrossOriginProtection reads Sec-Fetch-Site,
// or else compares Origin with Host. Requests with neither header (curl,
// programs) are not a browser's and pass.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(s.handle(func(http.ResponseWriter, *http.Request) error {
		return &taskrunner.Error{Code: taskrunner.CodeCrossOriginRequest,
			Message: "a browser request from another site may not change anything here"}
	}))
	return cop.Handler(next)
}

// limitRiverUIBodies limits request bodies of River UI, whose API reads
// them whole into memory, to MaxBodyBytes: a declared length over it is
// refused with body_too_large, a longer chunked body fails while read
// (River UI answers that with its own 413).
func (s *Server) limitRiverUIBodies(ui http.Handler) http.Handler {
	limit := s.deps.Limits.MaxRequestBodyBytes
	if limit <= 0 {
		limit = config.DefaultMaxRequestBodyBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			writeError(w, r, s.deps.Logger, bodyTooLarge(limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		ui.ServeHTTP(w, r)
	})
}

func bodyTooLarge(limit int64) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeBodyTooLarge,
		Message: fmt.Sprintf("request body is over %d bytes", limit)}
}

// drainBody lets a client that writes its whole body before it reads the
// answer read it. When a handler answers without reading the whole body
// (a 413, a 401, any refusal), the rest is read and thrown away before the
// answer goes out, up to drainMaxBytes and for up to drainMaxTime (never
// past the request's read deadline), as nginx's lingering close does.
// Without it, net/http reads at most 256 KiB more and then closes the
// connection with the rest unread, which makes the kernel reset it: the
// client gets ECONNRESET or EPIPE instead of the answer. Past the bounds
// the connection is closed all the same.
func (s *Server) drainBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		body := &trackedBody{rc: r.Body}
		r.Body = body
		next.ServeHTTP(w, r)
		if body.ended || (body.read == 0 && strings.EqualFold(r.Header.Get("Expect"), "100-continue")) {
			// Read to its end (or failed), or a client that waits for
			// "100 Continue" before it sends the body: nothing to drain.
			return
		}
		deadline := time.Now().Add(drainMaxTime)
		if s.deps.Limits.HTTPReadTimeout > 0 {
			deadline = minTime(deadline, start.Add(s.deps.Limits.HTTPReadTimeout))
		}
		if err := http.NewResponseController(w).SetReadDeadline(deadline); err != nil {
			return // not a connection of net/http's: nothing to bound the wait by
		}
		drainStart := time.Now()
		n, _ := io.CopyN(io.Discard, body, drainMaxBytes)
		level := slog.LevelDebug
		if !body.eof {
			level = slog.LevelInfo
		}
		s.deps.Logger.LogAttrs(r.Context(), level, "unread request body drained", slog.String("event", "http_body_drained"),
			slog.Int64("bytes", n), slog.Bool("complete", body.eof),
			slog.Float64("took_ms", float64(time.Since(drainStart).Microseconds())/1000),
			slog.String("request_id", middleware.GetReqID(r.Context())))
	})
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// trackedBody is a request body that knows whether it was read to its end.
// Handlers cannot close it: net/http closes the body itself, after
// drainBody has had what is left.
type trackedBody struct {
	rc    io.ReadCloser
	read  int64
	ended bool // a read failed or found the end
	eof   bool // the end was found
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if err != nil {
		b.ended = true
		b.eof = b.eof || errors.Is(err, io.EOF)
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }
