package fetch

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/taskrunner/taskrunner"
)

// Fetcher fetches URLs under one Config. It is safe for concurrent use and
// meant to be shared: it keeps a pool of idle connections (each one made to
// a checked address) but no cookies.
type Fetcher struct {
	policy       *policy
	resolver     Resolver
	maxBytes     int64
	maxRedirects int
	dialTimeout  time.Duration
	logger       *slog.Logger
	transport    *http.Transport
	client       *http.Client

	// trusted is a test hook: the one address and port the address-class
	// check lets through, so a test can serve a "public" host on loopback
	// while every other loopback address stays refused. Never set outside
	// tests.
	trusted netip.AddrPort
}

// New returns a Fetcher for cfg, with the defaults filled in for unset
// fields.
func New(cfg Config) *Fetcher {
	f := &Fetcher{
		policy:       newPolicy(cfg),
		resolver:     cfg.Resolver,
		maxBytes:     cfg.MaxBytes,
		maxRedirects: cfg.MaxRedirects,
		dialTimeout:  orDefault(cfg.DialTimeout, DefaultDialTimeout),
		logger:       cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxBytes
	}
	if f.maxRedirects == 0 {
		f.maxRedirects = DefaultMaxRedirects
	}
	f.transport = &http.Transport{
		// Never a proxy from HTTP_PROXY and friends: a proxy would connect
		// to the target itself, after and regardless of the checks here.
		Proxy:                  nil,
		DialContext:            f.dialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    orDefault(cfg.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		ResponseHeaderTimeout:  orDefault(cfg.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           32,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	f.client = &http.Client{
		Transport:     f.transport,
		CheckRedirect: f.checkRedirect,
		Jar:           nil, // no cookies kept between requests or fetches
	}
	return f
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// CloseIdleConnections closes the connections kept for reuse.
func (f *Fetcher) CloseIdleConnections() { f.transport.CloseIdleConnections() }

// Response is a fetched answer, whatever its status.
type Response struct {
	// URL is the requested URL, in the canonical form CheckURL returns.
	URL string
	// FinalURL is the URL that answered, after redirects.
	FinalURL string
	// Status is the HTTP status code. Fetch returns non-2xx answers too;
	// see OK.
	Status int
	// ContentType is the Content-Type header as sent, "" when absent.
	ContentType string
	// ContentLength is the declared length, at most the Config's MaxBytes,
	// or -1 when unknown (chunked, or compressed and decoded on the fly).
	ContentLength int64
	// Body is the body, decoded if the server compressed it. Reading past
	// MaxBytes fails with an *taskrunner.Error (artifact_size_exceeded) that wraps
	// ErrTooLarge; a read cut short by the context fails with fetch_timeout
	// or fetch_failed wrapping the context's error. The caller must Close
	// it, and must keep the context given to Fetch alive while reading.
	Body io.ReadCloser
}

// OK says whether the status is 2xx. Fetch does not judge the status: a
// 404 or 500 is a Response like any other, and the caller decides whether
// it is a failure (the fetch task stores only OK answers).
func (r *Response) OK() bool { return r.Status >= 200 && r.Status <= 299 }

// Fetch GETs rawURL within ctx, which bounds everything including reading
// the body. The URL and every redirect target must pass CheckURL's rules,
// and every address connected to must be public (unless
// AllowPrivateNetworks). A declared Content-Length over MaxBytes fails at
// once with artifact_size_exceeded. Errors are *taskrunner.Error.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (*Response, error) {
	return f.do(ctx, http.MethodGet, rawURL, nil, nil)
}

// Post POSTs body to rawURL with header (Content-Type and the like) under
// every check Fetch makes: the URL, every address dialled, and every
// redirect (a Config with MaxRedirects < 0 follows none, and returns the
// 3xx). Callbacks are delivered through it.
func (f *Fetcher) Post(ctx context.Context, rawURL string, header http.Header, body []byte) (*Response, error) {
	return f.do(ctx, http.MethodPost, rawURL, header, body)
}

func (f *Fetcher) do(ctx context.Context, method, rawURL string, header http.Header, body []byte) (*Response, error) {
	u, err := f.policy.checkRaw(rawURL)
	if err != nil {
		return nil, err
	}
	var reqBody io.Reader
	if body != nil {
		reqBody = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL cannot be requested", nil)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", UserAgent)
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	if resp.ContentLength > f.maxBytes {
		resp.Body.Close()
		return nil, errorf(taskrunner.CodeArtifactSizeExceeded, f.sizeMessage(), ErrTooLarge)
	}
	return &Response{
		URL:           u.String(),
		FinalURL:      resp.Request.URL.String(),
		Status:        resp.StatusCode,
		ContentType:   resp.Header.Get("Content-Type"),
		ContentLength: resp.ContentLength,
		Body:          &cappedBody{ctx: ctx, body: resp.Body, left: f.maxBytes, msg: f.sizeMessage()},
	}, nil
}

func (f *Fetcher) sizeMessage() string {
	return fmt.Sprintf("the response body is larger than %d bytes", f.maxBytes)
}

// checkRedirect re-checks every redirect target like the first URL, and
// sends the request to the canonical form that was checked.
func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if f.maxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > f.maxRedirects {
		return errorf(taskrunner.CodeTooManyRedirects, fmt.Sprintf("more than %d redirects", f.maxRedirects), nil)
	}
	u, err := f.policy.check(req.URL)
	if err != nil {
		var fe *taskrunner.Error
		if errors.As(err, &fe) {
			fe.Message = "redirect refused: " + fe.Message
		}
		return err
	}
	req.URL = u
	// The previous URL may carry a token in its query; the next host need
	// not see it.
	req.Header.Del("Referer")
	return nil
}

// dialContext connects to address ("host:port" of a checked URL) by
// resolving the host itself, refusing the connection if any address it
// resolves to is not public, and dialing the checked IP, never the name.
func (f *Fetcher) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	hostPart, portPart, err := net.SplitHostPort(address)
	if err != nil {
		return nil, errorf(taskrunner.CodeInvalidURL, "the address to connect to is not valid", err)
	}
	port, err := strconv.Atoi(portPart)
	if err != nil || port < 1 || port > 65535 {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL's port is not a TCP port", err)
	}
	if err := f.policy.checkPort(port); err != nil {
		return nil, err
	}
	h, err := parseHostname(hostPart)
	if err != nil {
		return nil, err
	}
	// The allowlist again: whatever reached the transport is what counts.
	if err := f.policy.checkHost(h); err != nil {
		return nil, err
	}
	addrs := []netip.Addr{h.ip}
	if !h.ip.IsValid() {
		addrs, err = f.resolver.LookupNetIP(ctx, "ip", h.name)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var dnsErr *net.DNSError
		if err != nil && (!errors.As(err, &dnsErr) || !dnsErr.IsNotFound) {
			// The resolver could not answer (a timeout, a server failure):
			// that says nothing of the name, and may pass.
			return nil, errorf(taskrunner.CodeFetchFailed, "the host name could not be resolved now", err)
		}
		if len(addrs) == 0 {
			return nil, f.refuseName(ctx, h, "does_not_resolve", "", netip.Addr{}, err)
		}
	}
	targets := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		// One non-public address and the name is refused: a host that
		// mixes them is either misconfigured or an attack.
		targets[i] = netip.AddrPortFrom(a.Unmap(), uint16(port))
		if err := f.checkAddr(ctx, h, targets[i]); err != nil {
			return nil, err
		}
	}
	dialer := net.Dialer{
		Timeout:   f.dialTimeout,
		KeepAlive: 30 * time.Second,
		Control:   f.control(h),
	}
	var lastErr error
	for _, t := range targets {
		conn, err := dialer.DialContext(ctx, network, t.String())
		if err == nil {
			return conn, nil
		}
		var fe *taskrunner.Error
		if errors.As(err, &fe) || ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// control checks the socket address actually being connected, the last
// word on what a fetch reaches.
func (f *Fetcher) control(h host) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return errorf(taskrunner.CodeAddressNotAllowed, "the address to connect to is not an IP address", err)
		}
		if err := f.policy.checkPort(int(ap.Port())); err != nil {
			return err
		}
		return f.checkAddr(context.Background(), h, ap)
	}
}

// checkAddr refuses a non-public address unless private networks are
// allowed. An IP literal's refusal names it and its class: the client
// wrote it. A name's is the one answer refuseName gives.
func (f *Fetcher) checkAddr(ctx context.Context, h host, ap netip.AddrPort) error {
	if f.policy.allowPrivate || (f.trusted.IsValid() && ap == f.trusted) {
		return nil
	}
	c := AddressClass(ap.Addr())
	if c == "" {
		return nil
	}
	if h.ip.IsValid() {
		return errorf(taskrunner.CodeAddressNotAllowed, fmt.Sprintf("%s is a non-public address (%s)", h, c), nil)
	}
	return f.refuseName(ctx, h, "non_public_address", c, ap.Addr(), nil)
}

// UnreachableMessage is the one public answer, with address_not_allowed,
// for a host name that does not resolve and one that resolves to an
// address a fetch may not reach: a client must not learn from it which
// names exist inside the network, or what they resolve to.
const UnreachableMessage = "the host name does not resolve, or resolves to an address that may not be reached"

// refuseName refuses host name h: it does not resolve (reason
// does_not_resolve; cause is the resolver's answer), or resolves to addr,
// of non-public class (reason non_public_address). The client gets
// UnreachableMessage whichever it is; the log line fetch_host_refused,
// and the error's cause, tell them apart.
func (f *Fetcher) refuseName(ctx context.Context, h host, reason, class string, addr netip.Addr, cause error) error {
	attrs := []slog.Attr{slog.String("event", "fetch_host_refused"), slog.String("host", h.name), slog.String("reason", reason)}
	detail := fmt.Sprintf("host %q does not resolve", h.name)
	if reason == "non_public_address" {
		attrs = append(attrs, slog.String("address_class", class), slog.String("address", addr.String()))
		detail = fmt.Sprintf("host %q resolves to a non-public address (%s)", h.name, class)
	}
	f.logger.LogAttrs(ctx, slog.LevelWarn, "host name refused", attrs...)
	if cause != nil {
		cause = fmt.Errorf("%s: %w", detail, cause)
	} else {
		cause = errors.New(detail)
	}
	return errorf(taskrunner.CodeAddressNotAllowed, UnreachableMessage, cause)
}

// transportError turns a failed request into an *taskrunner.Error whose message shows
// no URL (url.Error's text would show the query) and no server internals.
func transportError(ctx context.Context, err error) *taskrunner.Error {
	var fe *taskrunner.Error
	if errors.As(err, &fe) {
		return fe
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return errorf(taskrunner.CodeFetchTimeout, "no complete answer before the task's deadline", ctx.Err())
	case ctx.Err() != nil:
		return errorf(taskrunner.CodeFetchFailed, "the fetch was cancelled", ctx.Err())
	}
	var (
		netErr   net.Error
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recError tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr), errors.As(err, &invalid):
		return errorf(taskrunner.CodeFetchFailed, "the server's TLS certificate was not accepted", err)
	case errors.As(err, &recError):
		return errorf(taskrunner.CodeFetchFailed, "the TLS handshake failed", err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return errorf(taskrunner.CodeFetchTimeout, "the server did not answer in time", err)
	}
	return errorf(taskrunner.CodeFetchFailed, "could not get an answer from the server", err)
}

// cappedBody is a response body that fails when it would exceed its limit.
type cappedBody struct {
	ctx  context.Context
	body io.ReadCloser
	left int64 // bytes still allowed
	msg  string
	err  error // sticky
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// Ask for one byte beyond the limit, so a body of exactly the limit
	// ends in io.EOF and a longer one is caught.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.body.Read(p)
	if int64(n) > b.left {
		b.err = errorf(taskrunner.CodeArtifactSizeExceeded, b.msg, ErrTooLarge)
		n, b.left = int(b.left), 0
		return n, b.err
	}
	b.left -= int64(n)
	switch {
	case err == nil, err == io.EOF:
		return n, err
	case errors.Is(b.ctx.Err(), context.DeadlineExceeded):
		b.err = errorf(taskrunner.CodeFetchTimeout, "the body was not complete before the task's deadline", b.ctx.Err())
	case b.ctx.Err() != nil:
		b.err = errorf(taskrunner.CodeFetchFailed, "the fetch was cancelled", b.ctx.Err())
	default:
		b.err = errorf(taskrunner.CodeFetchFailed, "the connection failed while reading the body", err)
	}
	return n, b.err
}

func (b *cappedBody) Close() error { return b.body.Close() }
