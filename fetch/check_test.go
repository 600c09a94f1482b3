package fetch_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// requireCode asserts err is a *taskrunner.Error with code.
func requireCode(t *testing.T, err error, code taskrunner.Code) *taskrunner.Error {
	t.Helper()
	require.Error(t, err)
	var fe *taskrunner.Error
	require.True(t, errors.As(err, &fe), "want *taskrunner.Error, got %T: %v", err, err)
	require.Equal(t, code, fe.Code, "error: %v", err)
	require.NotEmpty(t, fe.Message)
	return fe
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	restricted := fetch.Config{Allowlist: []string{"example.com", "*.example.org", "bücher.example"}}
	anyHost := fetch.Config{Allowlist: []string{"*"}}
	cases := []struct {
		name string
		raw  string
		cfg  fetch.Config
		want string          // canonical URL when accepted
		code taskrunner.Code // error code when refused
	}{
		{name: "exact host", raw: "https://example.com/a?b=c#d", cfg: restricted, want: "https://example.com/a?b=c#d"},
		{name: "http", raw: "http://example.com", cfg: restricted, want: "http://example.com"},
		{name: "upper case host and scheme", raw: "HTTPS://EXAMPLE.COM/Path", cfg: restricted, want: "https://example.com/Path"},
		{name: "trailing dot", raw: "https://example.com./", cfg: restricted, want: "https://example.com/"},
		{name: "explicit default port", raw: "https://example.com:443/", cfg: restricted, want: "https://example.com:443/"},
		{name: "port 80 on https", raw: "https://example.com:80/", cfg: restricted, want: "https://example.com:80/"},
		{name: "port with leading zeros", raw: "http://example.com:0080/", cfg: restricted, want: "http://example.com:80/"},
		{name: "empty port", raw: "http://example.com:/", cfg: restricted, want: "http://example.com/"},
		{name: "subdomain of wildcard", raw: "https://a.b.example.org/", cfg: restricted, want: "https://a.b.example.org/"},
		{name: "unicode host to punycode", raw: "https://BÜCHER.example/", cfg: restricted, want: "https://xn--bcher-kva.example/"},
		{name: "punycode host matches unicode entry", raw: "https://xn--bcher-kva.example/", cfg: restricted, want: "https://xn--bcher-kva.example/"},
		{name: "percent-encoded unicode host", raw: "https://b%C3%BCcher.example/", cfg: restricted, want: "https://xn--bcher-kva.example/"},
		{name: "ideographic full stop", raw: "https://example。com/", cfg: restricted, want: "https://example.com/"},
		{name: "underscore label", raw: "https://a_b.example.org/", cfg: restricted, want: "https://a_b.example.org/"},
		{name: "public IPv4 with star", raw: "http://93.184.215.14/", cfg: anyHost, want: "http://93.184.215.14/"},
		{name: "public IPv6 with star", raw: "http://[2606:4700::1111]:443/", cfg: anyHost, want: "http://[2606:4700::1111]:443/"},
		{name: "NAT64 of a public address", raw: "http://[64:ff9b::5db8:d70e]/", cfg: anyHost, want: "http://[64:ff9b::5db8:d70e]/"},
		{name: "configured port", raw: "http://example.com:8080/", cfg: fetch.Config{Allowlist: []string{"example.com"}, AllowedPorts: []int{8080}}, want: "http://example.com:8080/"},
		{name: "loopback allowed with private networks", raw: "http://127.0.0.1/", cfg: fetch.Config{Allowlist: []string{"*"}, AllowPrivateNetworks: true}, want: "http://127.0.0.1/"},

		{name: "empty", raw: "", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "relative", raw: "/a/b", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "scheme relative", raw: "//example.com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "ftp", raw: "ftp://example.com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "file", raw: "file:///etc/passwd", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "gopher", raw: "gopher://example.com:70/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "opaque", raw: "http:example.com", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "no host", raw: "http:///path", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "userinfo", raw: "https://user:pass@example.com/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "user only", raw: "https://user@example.com/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "empty userinfo", raw: "https://@example.com/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "userinfo hiding the host", raw: "https://example.com@evil.test/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "backslash trick", raw: `https://evil.test\@example.com/`, cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "too long", raw: "https://example.com/" + strings.Repeat("a", fetch.MaxURLLength), cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "control character", raw: "https://example.com/\n", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "space in host", raw: "https://exa mple.com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "odd character in host", raw: "https://exa$mple.com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "empty label", raw: "https://example..com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "leading dot", raw: "https://.example.com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "label over 63", raw: "https://" + strings.Repeat("a", 64) + ".com/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "decimal IPv4", raw: "http://2130706433/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "hex IPv4", raw: "http://0x7f.1/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "short IPv4", raw: "http://127.1/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "octal IPv4", raw: "http://0177.0.0.1/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "IPv6 zone", raw: "http://[fe80::1%25eth0]/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "IPv4 in brackets", raw: "http://[127.0.0.1]/", cfg: anyHost, code: taskrunner.CodeInvalidURL},
		{name: "port out of range", raw: "http://example.com:65536/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "port zero", raw: "http://example.com:0/", cfg: restricted, code: taskrunner.CodeInvalidURL},
		{name: "bad punycode", raw: "http://xn--a.example/", cfg: anyHost, code: taskrunner.CodeInvalidURL},

		{name: "other domain", raw: "https://evil.test/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "suffix without dot", raw: "https://notexample.com/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "allowed name as a subdomain", raw: "https://example.com.evil.test/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "subdomain of exact entry", raw: "https://www.example.com/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "apex of wildcard", raw: "https://example.org/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "IP without star", raw: "http://93.184.215.14/", cfg: restricted, code: taskrunner.CodeDomainNotAllowed},
		{name: "empty allowlist", raw: "https://example.com/", cfg: fetch.Config{}, code: taskrunner.CodeDomainNotAllowed},

		{name: "port not configured", raw: "http://example.com:8080/", cfg: restricted, code: taskrunner.CodePortNotAllowed},
		{name: "ssh port", raw: "https://example.com:22/", cfg: restricted, code: taskrunner.CodePortNotAllowed},

		{name: "loopback literal", raw: "http://127.0.0.1/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "loopback trailing dot", raw: "http://127.0.0.1./", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "full-width digits", raw: "http://１２７.０.０.１/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "metadata literal", raw: "http://169.254.169.254/latest/meta-data/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "private literal", raw: "http://10.1.2.3/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "unspecified literal", raw: "http://0.0.0.0/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "IPv6 loopback", raw: "http://[::1]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "IPv6 unspecified", raw: "http://[::]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "mapped loopback", raw: "http://[::ffff:127.0.0.1]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "mapped metadata", raw: "http://[::ffff:169.254.169.254]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "mapped metadata in hex", raw: "http://[::ffff:a9fe:a9fe]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "NAT64 of loopback", raw: "http://[64:ff9b::7f00:1]/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "localhost", raw: "http://localhost/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "localhost upper case", raw: "http://LOCALHOST./", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
		{name: "sub of localhost", raw: "http://app.localhost/", cfg: anyHost, code: taskrunner.CodeAddressNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := fetch.CheckURL(tc.raw, tc.cfg)
			if tc.code != "" {
				fe := requireCode(t, err, tc.code)
				require.True(t, fetch.Rejected(fe.Code))
				require.False(t, fetch.Retryable(fe.Code))
				require.Nil(t, u)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, u.String())
			// The canonical form is a fixed point.
			again, err := fetch.CheckURL(u.String(), tc.cfg)
			require.NoError(t, err)
			require.Equal(t, u.String(), again.String())
		})
	}
}

// TestCheckURLMessages keeps refusals free of what the client must not
// see: the path and query of the URL, resolved addresses.
func TestCheckURLMessages(t *testing.T) {
	t.Parallel()
	cfg := fetch.Config{Allowlist: []string{"example.com"}}
	for _, raw := range []string{
		"https://user:s3cret@example.com/?token=s3cret",
		"https://evil.test/?token=s3cret",
		"https://example.com:8080/?token=s3cret",
		"ftp://example.com/?token=s3cret",
	} {
		_, err := fetch.CheckURL(raw, cfg)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cret", raw)
	}
	_, err := fetch.CheckURL("https://evil.test/", cfg)
	require.Equal(t, `domain_not_allowed: host "evil.test" is not allowed by FETCH_DOMAIN_ALLOWLIST`, err.Error())
	_, err = fetch.CheckURL("http://[::ffff:169.254.169.254]/", fetch.Config{Allowlist: []string{"*"}})
	require.Equal(t, "address_not_allowed: [::ffff:169.254.169.254] is a non-public address (cloud metadata)", err.Error())
}

func TestAllowlistMatching(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		entry string
		host  string
		match bool
	}{
		{"star allows a name", "*", "anything.test", true},
		{"star allows an IP", "*", "93.184.215.14", true},
		{"exact", "example.com", "example.com", true},
		{"exact is not its subdomain", "example.com", "www.example.com", false},
		{"exact is not a longer name", "example.com", "myexample.com", false},
		{"wildcard one level", "*.example.com", "www.example.com", true},
		{"wildcard two levels", "*.example.com", "a.b.example.com", true},
		{"wildcard is not the apex", "*.example.com", "example.com", false},
		{"wildcard is not a longer name", "*.example.com", "badexample.com", false},
		{"wildcard is not a prefix", "*.example.com", "example.com.evil.test", false},
		{"entry upper case", "*.EXAMPLE.com", "www.example.com", true},
		{"host upper case", "*.example.com", "WWW.Example.COM", true},
		{"entry trailing dot", "example.com.", "example.com", true},
		{"host trailing dot", "example.com", "example.com.", true},
		{"entry with spaces", "  example.com ", "example.com", true},
		{"unicode entry, punycode host", "*.bücher.example", "www.xn--bcher-kva.example", true},
		{"punycode entry, unicode host", "xn--bcher-kva.example", "bücher.example", true},
		{"IP entry is not honoured", "93.184.215.14", "93.184.215.14", false},
		{"name entry does not allow an IP", "example.com", "93.184.215.14", false},
		{"invalid entry matches nothing", "*example.com", "example.com", false},
		{"inner star matches nothing", "www.*.com", "www.example.com", false},
		{"bare star-dot matches nothing", "*.", "example.com", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := fetch.CheckURL("https://"+tc.host+"/", fetch.Config{Allowlist: []string{tc.entry}})
			if tc.match {
				require.NoError(t, err)
			} else {
				requireCode(t, err, taskrunner.CodeDomainNotAllowed)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, fetch.Config{Allowlist: []string{"*", "example.com", "*.example.org", "bücher.example", " "}, AllowedPorts: []int{8080}}.Validate())
	cases := []struct {
		name string
		cfg  fetch.Config
		want string
	}{
		{"leading star without dot", fetch.Config{Allowlist: []string{"*example.com"}}, `"*example.com"`},
		{"inner star", fetch.Config{Allowlist: []string{"www.*.com"}}, `"www.*.com"`},
		{"IP entry", fetch.Config{Allowlist: []string{"10.0.0.1"}}, "allowed only by *"},
		{"entry with a port", fetch.Config{Allowlist: []string{"example.com:8080"}}, `"example.com:8080"`},
		{"port zero", fetch.Config{AllowedPorts: []int{0}}, "port 0"},
		{"port too big", fetch.Config{AllowedPorts: []int{70000}}, "port 70000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestAddressClass(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr  string
		class string
	}{
		{"93.184.215.14", ""},
		{"8.8.8.8", ""},
		{"2606:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
		{"::ffff:8.8.8.8", ""},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "shared (carrier-grade NAT)"},
		{"100.128.0.1", ""},
		{"169.254.169.254", "cloud metadata"},
		{"169.254.1.1", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"255.255.255.255", "broadcast"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.170", "IETF protocol assignment"},
		{"192.0.2.1", "documentation"},
		{"198.51.100.1", "documentation"},
		{"203.0.113.1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"192.88.99.1", "6to4 relay anycast"},
		{"::1", "loopback"},
		{"::", "unspecified"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::ffff:10.0.0.1", "private"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"64:ff9b::7f00:1", "NAT64-mapped loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64-mapped cloud metadata"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fc00::1", "unique local"},
		{"fd12:3456::1", "unique local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"2001::1", "IETF protocol assignment"}, // Teredo
		{"2002:7f00:1::", "6to4"},
		{"100::1", "discard-only"},
		{"4000::1", "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.class, fetch.AddressClass(netip.MustParseAddr(tc.addr)))
		})
	}
	require.Equal(t, "invalid", fetch.AddressClass(netip.Addr{}))
}
