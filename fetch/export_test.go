package fetch

import (
	"crypto/x509"
	"net/http"
	"net/netip"
	"syscall"
)

// TrustForTest makes f treat ap, and only ap, as a public address, so a
// test server on loopback can stand for a public host while every other
// loopback address stays refused. Call it before the first Fetch.
func (f *Fetcher) TrustForTest(ap netip.AddrPort) { f.trusted = ap }

// TrustRootsForTest makes f accept certificates signed by pool (an
// httptest TLS server's). Call it before the first Fetch.
func (f *Fetcher) TrustRootsForTest(pool *x509.CertPool) { f.transport.TLSClientConfig.RootCAs = pool }

// TransportForTest is f's transport, for inspecting its settings.
func (f *Fetcher) TransportForTest() *http.Transport { return f.transport }

// ControlForTest is the net.Dialer Control function f dials host with.
func (f *Fetcher) ControlForTest(host string) func(network, address string, c syscall.RawConn) error {
	h, err := parseHostname(host)
	if err != nil {
		panic(err)
	}
	return f.control(h)
}
