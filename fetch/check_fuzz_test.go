package fetch_test

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// FuzzCheckURL feeds arbitrary strings to CheckURL under a restrictive and
// an open configuration: it never panics, every refusal is a *taskrunner.Error with a
// client-error code, and anything accepted is an http(s) URL without
// userinfo, with an allowed host and port, short enough, and accepted again
// unchanged in its canonical form.
func FuzzCheckURL(f *testing.F) {
	for _, seed := range []string{
		"https://example.com/",
		"http://www.example.org:8080/a?b#c",
		"HTTPS://EXAMPLE.COM./",
		"https://user:pass@example.com/",
		"https://example.com@evil.test/",
		`https://evil.test\@example.com/`,
		"http://127.0.0.1/",
		"http://127.1/",
		"http://2130706433/",
		"http://0x7f.0.0.1/",
		"http://[::1]/",
		"http://[::ffff:127.0.0.1]/",
		"http://[::ffff:169.254.169.254]:80/",
		"http://[fe80::1%25eth0]/",
		"http://[64:ff9b::7f00:1]/",
		"http://169.254.169.254/latest/meta-data/",
		"http://localhost:8080/",
		"https://bücher.example/",
		"https://xn--bcher-kva.example/",
		"http://１２７.０.０.１/",
		"http://example。com/",
		"https://example.com:0/",
		"https://example.com:99999/",
		"http:example.com",
		"//example.com",
		"ftp://example.com/",
		"javascript:alert(1)",
		"",
		"http://%e2%80%8b.example.com/",
		"http://a.example.org:/",
		"http://0\xff",
	} {
		f.Add(seed)
	}
	restricted := fetch.Config{Allowlist: []string{"example.com", "*.example.org"}, AllowedPorts: []int{8080}}
	open := fetch.Config{Allowlist: []string{"*"}}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, cfg := range []fetch.Config{restricted, open} {
			u, err := fetch.CheckURL(raw, cfg)
			if err != nil {
				var fe *taskrunner.Error
				if !errors.As(err, &fe) || !fetch.Rejected(fe.Code) {
					t.Fatalf("%q: refusal %v is not a rejection *taskrunner.Error", raw, err)
				}
				continue
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				t.Fatalf("%q: accepted scheme %q", raw, u.Scheme)
			}
			if u.User != nil || u.Opaque != "" {
				t.Fatalf("%q: accepted userinfo or an opaque URL", raw)
			}
			host := u.Hostname()
			if host == "" || host != strings.ToLower(host) || strings.HasSuffix(host, ".") {
				t.Fatalf("%q: accepted host %q is not canonical", raw, host)
			}
			port := 80
			if u.Scheme == "https" {
				port = 443
			}
			if p := u.Port(); p != "" {
				if port, err = strconv.Atoi(p); err != nil {
					t.Fatalf("%q: accepted port %q", raw, p)
				}
			}
			addr, ipErr := netip.ParseAddr(host)
			isIP := ipErr == nil
			if isIP && fetch.AddressClass(addr) != "" {
				t.Fatalf("%q: accepted non-public address %s", raw, addr)
			}
			if cfg.Allowlist[0] != "*" {
				if host != "example.com" && !strings.HasSuffix(host, ".example.org") {
					t.Fatalf("%q: accepted host %q outside the allowlist", raw, host)
				}
				if port != 80 && port != 443 && port != 8080 {
					t.Fatalf("%q: accepted port %d", raw, port)
				}
			} else if port != 80 && port != 443 {
				t.Fatalf("%q: accepted port %d", raw, port)
			}
			s := u.String()
			if len(s) > fetch.MaxURLLength {
				t.Fatalf("%q: accepted %d bytes", raw, len(s))
			}
			again, err := fetch.CheckURL(s, cfg)
			if err != nil || again.String() != s {
				t.Fatalf("%q: canonical form %q not a fixed point: %v", raw, s, err)
			}
		}
	})
}
