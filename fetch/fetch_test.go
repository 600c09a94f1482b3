package fetch_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// resolver is DNS for tests: names it does not know do not exist, so no
// test ever asks real DNS.
type resolver map[string][]string

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

// server is a local test server that counts the requests it gets.
type server struct {
	*httptest.Server
	port int
	addr netip.AddrPort
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request // the last request seen
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.last = r.Clone(context.Background())
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	s.addr = netip.MustParseAddrPort(s.Listener.Addr().String())
	s.port = int(s.addr.Port())
	return s
}

// lastRequest is the last request the server got.
func (s *server) lastRequest() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}

func readAll(t *testing.T, resp *fetch.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestFetchAllowed(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "abc", Path: "/"})
		text("hello from "+r.URL.Path)(w, r)
	})
	dns := resolver{"ok.example": {"127.0.0.1"}, "www.ok.example": {"127.0.0.1"}}
	cases := []struct {
		name      string
		allowlist []string
		url       string
	}{
		{"IP literal allowed by star", []string{"*"}, fmt.Sprintf("http://127.0.0.1:%d/page?q=1", srv.port)},
		{"exact name", []string{"ok.example"}, fmt.Sprintf("http://ok.example:%d/page?q=1", srv.port)},
		{"wildcard name", []string{"*.ok.example"}, fmt.Sprintf("http://www.ok.example:%d/page?q=1", srv.port)},
		{"upper-case name", []string{"ok.example"}, fmt.Sprintf("http://OK.Example.:%d/page?q=1", srv.port)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := fetch.New(fetch.Config{
				Allowlist:            tc.allowlist,
				AllowedPorts:         []int{srv.port},
				AllowPrivateNetworks: true,
				Resolver:             dns,
			})
			for range 2 {
				resp, err := f.Fetch(context.Background(), tc.url)
				require.NoError(t, err)
				require.True(t, resp.OK())
				require.Equal(t, http.StatusOK, resp.Status)
				require.Equal(t, "text/plain; charset=utf-8", resp.ContentType)
				require.Equal(t, int64(len("hello from /page")), resp.ContentLength)
				require.Equal(t, "hello from /page", readAll(t, resp))
				require.Equal(t, strings.ToLower(strings.Replace(tc.url, ".:", ":", 1)), strings.ToLower(resp.URL))
				require.Equal(t, resp.URL, resp.FinalURL)
			}
			// The cookie set by the first answer was not sent back.
			req := srv.lastRequest()
			require.Equal(t, fetch.UserAgent, req.Header.Get("User-Agent"))
			require.Equal(t, "*/*", req.Header.Get("Accept"))
			require.Empty(t, req.Header.Get("Cookie"))
			require.Equal(t, http.MethodGet, req.Method)
		})
	}
}

func TestFetchReturnsNon2xx(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "gone fishing", http.StatusNotFound)
	})
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, AllowPrivateNetworks: true, Resolver: resolver{}})
	resp, err := f.Fetch(context.Background(), srv.URL+"/missing")
	require.NoError(t, err, "a 404 is an answer, not an error")
	require.False(t, resp.OK())
	require.Equal(t, http.StatusNotFound, resp.Status)
	require.Equal(t, "gone fishing\n", readAll(t, resp))
}

func TestFetchDomainNotAllowed(t *testing.T) {
	t.Parallel()
	srv := newServer(t, text("secret"))
	dns := resolver{"ok.example": {"127.0.0.1"}, "evil.example": {"127.0.0.1"}}
	cfg := fetch.Config{
		Allowlist:            []string{"ok.example", "*.sub.ok.example"},
		AllowedPorts:         []int{srv.port},
		AllowPrivateNetworks: true,
		Resolver:             dns,
	}
	f := fetch.New(cfg)
	for _, host := range []string{"evil.example", "ok.example.evil.example", "sub.ok.example", "127.0.0.1"} {
		raw := fmt.Sprintf("http://%s:%d/", host, srv.port)
		_, err := fetch.CheckURL(raw, cfg)
		requireCode(t, err, taskrunner.CodeDomainNotAllowed)
		_, err = f.Fetch(context.Background(), raw)
		requireCode(t, err, taskrunner.CodeDomainNotAllowed)
	}
	require.Zero(t, srv.hits.Load(), "nothing was requested")
}

func TestFetchPorts(t *testing.T) {
	t.Parallel()
	srv := newServer(t, text("ok"))
	base := fetch.Config{Allowlist: []string{"*"}, AllowPrivateNetworks: true, Resolver: resolver{}}

	_, err := fetch.CheckURL(srv.URL, base)
	requireCode(t, err, taskrunner.CodePortNotAllowed)
	_, err = fetch.New(base).Fetch(context.Background(), srv.URL)
	requireCode(t, err, taskrunner.CodePortNotAllowed)
	require.Zero(t, srv.hits.Load())

	withPort := base
	withPort.AllowedPorts = []int{srv.port}
	resp, err := fetch.New(withPort).Fetch(context.Background(), srv.URL)
	require.NoError(t, err)
	require.Equal(t, "ok", readAll(t, resp))
}

// TestFetchRefusesNonPublicAddresses fetches, with private networks not
// allowed, names that resolve to non-public addresses and such addresses
// written as literals; a local server listens on the port asked for, and is
// never reached.
func TestFetchRefusesNonPublicAddresses(t *testing.T) {
	t.Parallel()
	srv := newServer(t, text("internal secret"))
	dns := resolver{
		"loopback.example":   {"127.0.0.1"},
		"loopback2.example":  {"127.0.0.2"},
		"metadata.example":   {"169.254.169.254"},
		"private.example":    {"10.0.0.1"},
		"cgnat.example":      {"100.64.1.1"},
		"zero.example":       {"0.0.0.0"},
		"v6loopback.example": {"::1"},
		"mapped.example":     {"::ffff:127.0.0.1"},
		"mappedmeta.example": {"::ffff:169.254.169.254"},
		"nat64.example":      {"64:ff9b::7f00:1"},
		"ula.example":        {"fd00::1"},
		"linklocal6.example": {"fe80::1"},
		// A public address first does not save the name: one bad
		// address refuses it, and nothing is dialled.
		"mixed.example": {"93.184.215.14", "127.0.0.1"},
	}
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, Resolver: dns})
	cases := []struct {
		name  string
		host  string
		class string
	}{
		{"name to loopback", "loopback.example", "loopback"},
		{"name to other loopback", "loopback2.example", "loopback"},
		{"name to metadata", "metadata.example", "cloud metadata"},
		{"name to private", "private.example", "private"},
		{"name to CGNAT", "cgnat.example", "carrier-grade NAT"},
		{"name to unspecified", "zero.example", "unspecified"},
		{"name to IPv6 loopback", "v6loopback.example", "loopback"},
		{"name to mapped loopback", "mapped.example", "loopback"},
		{"name to mapped metadata", "mappedmeta.example", "cloud metadata"},
		{"name to NAT64 loopback", "nat64.example", "NAT64-mapped loopback"},
		{"name to unique local", "ula.example", "unique local"},
		{"name to IPv6 link-local", "linklocal6.example", "link-local"},
		{"name to public and loopback", "mixed.example", "loopback"},
		{"localhost", "localhost", "loopback"},
		{"loopback literal", "127.0.0.1", "loopback"},
		{"metadata literal", "169.254.169.254", "cloud metadata"},
		{"IPv6 loopback literal", "[::1]", "loopback"},
		{"mapped loopback literal", "[::ffff:127.0.0.1]", "loopback"},
		{"mapped metadata literal", "[::ffff:169.254.169.254]", "cloud metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := f.Fetch(context.Background(), fmt.Sprintf("http://%s:%d/", tc.host, srv.port))
			require.Nil(t, resp)
			fe := requireCode(t, err, taskrunner.CodeAddressNotAllowed)
			require.False(t, fetch.Retryable(fe.Code))
			if _, resolved := dns[tc.host]; resolved {
				// A name: the one answer a name that does not resolve
				// gets too; the cause, for the log, has the class.
				require.Equal(t, fetch.UnreachableMessage, fe.Message)
				require.Contains(t, err.Error(), tc.class)
			} else {
				require.Contains(t, fe.Message, tc.class, "what the client wrote is named")
			}
			if addrs, ok := dns[tc.host]; ok {
				for _, a := range addrs {
					require.NotContains(t, fe.Message, a, "the resolved address is not shown")
				}
			}
		})
	}
	t.Cleanup(func() { require.Zero(t, srv.hits.Load(), "the internal server was never reached") })
}

// TestFetchUnknownHostIsAnsweredAsAPrivateOne: a name that does not
// resolve and a name that resolves to a private address get the very
// same error, so a client cannot tell which names exist inside the
// network; the log line fetch_host_refused, and the error's cause, tell
// them apart. A resolver that cannot answer now is another matter: worth
// a retry.
func TestFetchUnknownHostIsAnsweredAsAPrivateOne(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, Logger: logs.logger(),
		Resolver: resolver{"internal.example": {"10.1.2.3"}}})
	_, private := f.Fetch(context.Background(), "https://internal.example/")
	_, unknown := f.Fetch(context.Background(), "https://nowhere.example/")
	for _, err := range []error{private, unknown} {
		fe := requireCode(t, err, taskrunner.CodeAddressNotAllowed)
		require.Equal(t, fetch.UnreachableMessage, fe.Message)
		require.False(t, fetch.Retryable(fe.Code))
		require.True(t, fetch.Rejected(fe.Code))
	}
	require.Equal(t, taskrunner.ErrorMessage(private), taskrunner.ErrorMessage(unknown))
	var dnsErr *net.DNSError
	require.ErrorAs(t, unknown, &dnsErr, "the cause is kept for logs")
	require.Contains(t, private.Error(), "non-public address (private)")
	require.NotContains(t, taskrunner.ErrorMessage(private), "10.1.2.3")

	lines := logs.events("fetch_host_refused")
	require.Len(t, lines, 2)
	require.Equal(t, "internal.example", lines[0]["host"])
	require.Equal(t, "non_public_address", lines[0]["reason"])
	require.Equal(t, "private", lines[0]["address_class"])
	require.Equal(t, "10.1.2.3", lines[0]["address"])
	require.Equal(t, "nowhere.example", lines[1]["host"])
	require.Equal(t, "does_not_resolve", lines[1]["reason"])

	down := fetch.New(fetch.Config{Allowlist: []string{"*"}, Resolver: failingResolver{}})
	_, err := down.Fetch(context.Background(), "https://nowhere.example/")
	fe := requireCode(t, err, taskrunner.CodeFetchFailed)
	require.True(t, fetch.Retryable(fe.Code))
}

// failingResolver cannot answer: a DNS server that timed out.
type failingResolver struct{}

func (failingResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true, IsTemporary: true}
}

// logLines keeps the JSON lines a logger writes.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// events are the lines whose event is name.
func (l *logLines) events(name string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["event"] == name {
			out = append(out, m)
		}
	}
	return out
}

// TestRedirects serves a "public" host from loopback: the fetcher trusts
// that one address and port, and every other loopback address and port
// (another local server, "internal") stays refused.
func TestRedirects(t *testing.T) {
	t.Parallel()
	internal := newServer(t, text("internal secret"))
	var public *server
	public = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/to":
			http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
		case r.URL.Path == "/loop":
			http.Redirect(w, r, "/loop", http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, "/chain/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/chain/"))
			if n == 0 {
				text("end of chain")(w, r)
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/chain/%d", n-1), http.StatusTemporaryRedirect)
		default:
			text("public page")(w, r)
		}
	})
	dns := resolver{
		"public.example":   {"127.0.0.1"}, // trusted for public's port only
		"other.example":    {"127.0.0.1"},
		"internal.example": {"127.0.0.1"},
		"meta.example":     {"169.254.169.254"},
	}
	start := func(path, target string) string {
		return fmt.Sprintf("http://public.example:%d%s?u=%s", public.port, path, target)
	}
	cases := []struct {
		name         string
		allowlist    []string
		maxRedirects int
		url          string
		code         taskrunner.Code // "" for success
		want         string          // the body when successful
		wantStatus   int
	}{
		{name: "relative redirect followed", url: start("/to", "/page"), want: "public page"},
		{name: "absolute redirect followed", url: start("/to", fmt.Sprintf("http://PUBLIC.example:%d/page", public.port)), want: "public page"},
		{name: "five redirects followed", url: start("/chain/5", ""), want: "end of chain"},
		{name: "six redirects refused", url: start("/chain/6", ""), code: taskrunner.CodeTooManyRedirects},
		{name: "loop refused", url: start("/loop", ""), code: taskrunner.CodeTooManyRedirects},
		{name: "lower limit", maxRedirects: 2, url: start("/chain/3", ""), code: taskrunner.CodeTooManyRedirects},
		{name: "redirects not followed", maxRedirects: -1, url: start("/to", "/page"), wantStatus: http.StatusFound},
		{name: "to a domain not allowed", url: start("/to", fmt.Sprintf("http://other.example:%d/", internal.port)), code: taskrunner.CodeDomainNotAllowed},
		{name: "to an IP without star", url: start("/to", fmt.Sprintf("http://127.0.0.1:%d/", internal.port)), code: taskrunner.CodeDomainNotAllowed},
		{name: "to a loopback literal", allowlist: []string{"*"}, url: start("/to", fmt.Sprintf("http://127.0.0.1:%d/", internal.port)), code: taskrunner.CodeAddressNotAllowed},
		{name: "to the public server's own address as a literal", allowlist: []string{"*"}, url: start("/to", fmt.Sprintf("http://127.0.0.1:%d/", public.port)), code: taskrunner.CodeAddressNotAllowed},
		{name: "to a mapped loopback literal", allowlist: []string{"*"}, url: start("/to", fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", internal.port)), code: taskrunner.CodeAddressNotAllowed},
		{name: "to the metadata address", allowlist: []string{"*"}, url: start("/to", "http://169.254.169.254/latest/meta-data/"), code: taskrunner.CodeAddressNotAllowed},
		{name: "to a name resolving to loopback", url: start("/to", fmt.Sprintf("http://internal.example:%d/", internal.port)), code: taskrunner.CodeAddressNotAllowed},
		{name: "to a name resolving to metadata", url: start("/to", "http://meta.example/latest/meta-data/"), code: taskrunner.CodeAddressNotAllowed},
		{name: "to a port not allowed", url: start("/to", "http://public.example:22/"), code: taskrunner.CodePortNotAllowed},
		{name: "to ftp", url: start("/to", "ftp://public.example/"), code: taskrunner.CodeInvalidURL},
		{name: "to a URL with userinfo", url: start("/to", fmt.Sprintf("http://u:p@public.example:%d/page", public.port)), code: taskrunner.CodeInvalidURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			allowlist := tc.allowlist
			if allowlist == nil {
				allowlist = []string{"public.example", "internal.example", "meta.example"}
			}
			f := fetch.New(fetch.Config{
				Allowlist:    allowlist,
				AllowedPorts: []int{public.port, internal.port},
				MaxRedirects: tc.maxRedirects,
				Resolver:     dns,
			})
			f.TrustForTest(public.addr)
			resp, err := f.Fetch(context.Background(), tc.url)
			if tc.code != "" {
				fe := requireCode(t, err, tc.code)
				if tc.code != taskrunner.CodeTooManyRedirects && tc.code != taskrunner.CodeAddressNotAllowed {
					require.True(t, strings.HasPrefix(fe.Message, "redirect refused: "), fe.Message)
				}
				return
			}
			require.NoError(t, err)
			if tc.wantStatus != 0 {
				require.Equal(t, tc.wantStatus, resp.Status)
				require.Equal(t, resp.URL, resp.FinalURL)
				_ = readAll(t, resp)
				return
			}
			require.Equal(t, tc.want, readAll(t, resp))
			require.NotEqual(t, resp.URL, resp.FinalURL)
			require.True(t, strings.HasPrefix(resp.FinalURL, fmt.Sprintf("http://public.example:%d/", public.port)), resp.FinalURL)
		})
	}
	t.Cleanup(func() { require.Zero(t, internal.hits.Load(), "no redirect reached the internal server") })
}

// TestRedirectDropsReferer: the next host does not learn the previous URL,
// which may carry a token.
func TestRedirectDropsReferer(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/end", http.StatusFound)
			return
		}
		text("end")(w, r)
	})
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, AllowPrivateNetworks: true, Resolver: resolver{}})
	resp, err := f.Fetch(context.Background(), srv.URL+"/start?token=s3cret")
	require.NoError(t, err)
	require.Equal(t, "end", readAll(t, resp))
	require.Equal(t, srv.URL+"/end", resp.FinalURL)
	require.Empty(t, srv.lastRequest().Header.Get("Referer"))
	require.Equal(t, fetch.UserAgent, srv.lastRequest().Header.Get("User-Agent"))
}

// TestDialTimeResolution: every new connection resolves and checks the
// name again, so a name that changes to a non-public address (DNS
// rebinding) is refused on the next connection.
func TestDialTimeResolution(t *testing.T) {
	t.Parallel()
	srv := newServer(t, text("ok"))
	var lookups atomic.Int64
	dns := resolverFunc(func(host string) []string {
		if lookups.Add(1) == 1 {
			return []string{"127.0.0.1"} // trusted below
		}
		return []string{"169.254.169.254"}
	})
	f := fetch.New(fetch.Config{Allowlist: []string{"rebind.example"}, AllowedPorts: []int{srv.port}, Resolver: dns})
	f.TrustForTest(srv.addr)
	raw := fmt.Sprintf("http://rebind.example:%d/", srv.port)

	resp, err := f.Fetch(context.Background(), raw)
	require.NoError(t, err)
	require.Equal(t, "ok", readAll(t, resp))

	f.CloseIdleConnections()
	_, err = f.Fetch(context.Background(), raw)
	fe := requireCode(t, err, taskrunner.CodeAddressNotAllowed)
	require.Equal(t, fetch.UnreachableMessage, fe.Message)
	require.Contains(t, err.Error(), "cloud metadata")
	require.EqualValues(t, 2, lookups.Load())
	require.EqualValues(t, 1, srv.hits.Load())
}

type resolverFunc func(host string) []string

func (r resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return resolver{host: r(host)}.LookupNetIP(ctx, network, host)
}

// TestDialControl: the check on the socket address actually connected.
func TestDialControl(t *testing.T) {
	t.Parallel()
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{8443}})
	control := f.ControlForTest("public.example")
	cases := []struct {
		name    string
		network string
		address string
		code    taskrunner.Code
	}{
		{"public IPv4", "tcp4", "93.184.215.14:443", ""},
		{"public IPv6", "tcp6", "[2606:4700::1111]:80", ""},
		{"configured port", "tcp4", "93.184.215.14:8443", ""},
		{"loopback", "tcp4", "127.0.0.1:80", taskrunner.CodeAddressNotAllowed},
		{"metadata", "tcp4", "169.254.169.254:80", taskrunner.CodeAddressNotAllowed},
		{"IPv6 loopback", "tcp6", "[::1]:443", taskrunner.CodeAddressNotAllowed},
		{"mapped metadata", "tcp6", "[::ffff:169.254.169.254]:80", taskrunner.CodeAddressNotAllowed},
		{"link-local with zone", "tcp6", "[fe80::1%eth0]:80", taskrunner.CodeAddressNotAllowed},
		{"port not allowed", "tcp4", "93.184.215.14:25", taskrunner.CodePortNotAllowed},
		{"not an address", "tcp", "public.example:80", taskrunner.CodeAddressNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := control(tc.network, tc.address, nil)
			if tc.code == "" {
				require.NoError(t, err)
				return
			}
			requireCode(t, err, tc.code)
		})
	}
}

func TestTransportIgnoresProxyEnvironment(t *testing.T) {
	t.Parallel()
	tr := fetch.New(fetch.Config{}).TransportForTest()
	require.Nil(t, tr.Proxy, "HTTP_PROXY would connect on the fetcher's behalf, after the checks")
	require.NotNil(t, tr.DialContext)
	require.Nil(t, tr.DialTLSContext, "TLS runs over the checked dial")
	require.Positive(t, tr.TLSHandshakeTimeout)
	require.Positive(t, tr.ResponseHeaderTimeout)
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	const limit = 1000
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(make([]byte, 512<<10))
	require.NoError(t, zw.Close())
	require.Less(t, gz.Len(), limit, "the bomb is small on the wire")

	handlers := map[string]http.HandlerFunc{
		"/declared-over": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(limit+1))
			_, _ = w.Write(make([]byte, limit+1))
		},
		"/declared-exact": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(limit))
			_, _ = w.Write(make([]byte, limit))
		},
		"/chunked-over": func(w http.ResponseWriter, _ *http.Request) {
			for range 4 {
				_, _ = w.Write(make([]byte, 300))
				w.(http.Flusher).Flush()
			}
		},
		"/chunked-exact": func(w http.ResponseWriter, _ *http.Request) {
			for range 4 {
				_, _ = w.Write(make([]byte, limit/4))
				w.(http.Flusher).Flush()
			}
		},
		"/gzip-bomb": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(gz.Len()))
			_, _ = w.Write(gz.Bytes())
		},
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { handlers[r.URL.Path](w, r) })
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, AllowPrivateNetworks: true, MaxBytes: limit, Resolver: resolver{}})

	cases := []struct {
		name      string
		path      string
		fetchFail bool  // refused by Content-Length, before any reading
		length    int64 // ContentLength when not refused
		readFail  bool
	}{
		{name: "declared over the limit", path: "/declared-over", fetchFail: true},
		{name: "declared at the limit", path: "/declared-exact", length: limit},
		{name: "chunked over the limit", path: "/chunked-over", length: -1, readFail: true},
		{name: "chunked at the limit", path: "/chunked-exact", length: -1},
		{name: "gzip bomb", path: "/gzip-bomb", length: -1, readFail: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := f.Fetch(context.Background(), srv.URL+tc.path)
			if tc.fetchFail {
				fe := requireCode(t, err, taskrunner.CodeArtifactSizeExceeded)
				require.ErrorIs(t, err, fetch.ErrTooLarge)
				require.False(t, fetch.Retryable(fe.Code))
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, tc.length, resp.ContentLength)
			body, err := io.ReadAll(resp.Body)
			if !tc.readFail {
				require.NoError(t, err)
				require.Len(t, body, limit)
				return
			}
			requireCode(t, err, taskrunner.CodeArtifactSizeExceeded)
			require.ErrorIs(t, err, fetch.ErrTooLarge)
			require.Len(t, body, limit, "exactly the limit is delivered, not a byte more")
			_, err = resp.Body.Read(make([]byte, 10))
			require.ErrorIs(t, err, fetch.ErrTooLarge, "the error sticks")
		})
	}
}

func TestDefaultMaxBytes(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(fetch.DefaultMaxBytes+1, 10))
		w.WriteHeader(http.StatusOK)
	})
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, AllowPrivateNetworks: true, Resolver: resolver{}})
	_, err := f.Fetch(context.Background(), srv.URL)
	requireCode(t, err, taskrunner.CodeArtifactSizeExceeded)
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	// The handlers stall until the client goes away (or, as a safety net,
	// for longer than any test should take).
	stall := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("the first part "))
			w.(http.Flusher).Flush()
		}
		stall(r)
	})
	cfg := fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{srv.port}, AllowPrivateNetworks: true, Resolver: resolver{}}
	// Long enough that the headers of /slow-body arrive within it on a
	// loaded machine; each case still ends well before its 3 s bound.
	const deadline = time.Second

	t.Run("slow headers", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		began := time.Now()
		_, err := fetch.New(cfg).Fetch(ctx, srv.URL+"/slow-headers")
		require.Less(t, time.Since(began), 3*time.Second)
		fe := requireCode(t, err, taskrunner.CodeFetchTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.True(t, fetch.Retryable(fe.Code))
	})
	t.Run("slow body", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		began := time.Now()
		resp, err := fetch.New(cfg).Fetch(ctx, srv.URL+"/slow-body")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.Less(t, time.Since(began), 3*time.Second)
		require.Equal(t, "the first part ", string(body))
		requireCode(t, err, taskrunner.CodeFetchTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("response header timeout", func(t *testing.T) {
		t.Parallel()
		c := cfg
		c.ResponseHeaderTimeout = deadline
		began := time.Now()
		_, err := fetch.New(c).Fetch(context.Background(), srv.URL+"/slow-headers")
		require.Less(t, time.Since(began), 3*time.Second)
		requireCode(t, err, taskrunner.CodeFetchTimeout)
	})
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(deadline, cancel)
		began := time.Now()
		_, err := fetch.New(cfg).Fetch(ctx, srv.URL+"/slow-headers")
		require.Less(t, time.Since(began), 3*time.Second)
		requireCode(t, err, taskrunner.CodeFetchFailed)
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestFetchHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(text("over TLS"))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	// httptest's certificate is for example.com (and 127.0.0.1).
	cfg := fetch.Config{
		Allowlist:            []string{"example.com"},
		AllowedPorts:         []int{int(port)},
		AllowPrivateNetworks: true,
		Resolver:             resolver{"example.com": {"127.0.0.1"}},
	}
	raw := fmt.Sprintf("https://example.com:%d/", port)

	f := fetch.New(cfg)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	f.TrustRootsForTest(pool)
	resp, err := f.Fetch(context.Background(), raw)
	require.NoError(t, err)
	require.Equal(t, "over TLS", readAll(t, resp))

	// Without the test root the certificate is refused, and the message
	// says so without internals.
	_, err = fetch.New(cfg).Fetch(context.Background(), raw)
	fe := requireCode(t, err, taskrunner.CodeFetchFailed)
	require.Contains(t, fe.Message, "certificate")
}

// TestErrorsShowNoURL: a failed fetch's error text carries neither the
// path nor the query of the URL.
func TestErrorsShowNoURL(t *testing.T) {
	t.Parallel()
	f := fetch.New(fetch.Config{Allowlist: []string{"*"}, Resolver: resolver{"meta.example": {"169.254.169.254"}}})
	for _, raw := range []string{
		"https://nowhere.example/s3cret?token=s3cret",
		"http://meta.example/s3cret?token=s3cret",
	} {
		_, err := f.Fetch(context.Background(), raw)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cret")
		var fe *taskrunner.Error
		require.True(t, errors.As(err, &fe))
	}
}
