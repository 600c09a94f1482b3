package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/taskrunner/taskrunner"
)

// Limits and defaults.
const (
	// MaxURLLength bounds a URL, the first one and every redirect target.
	MaxURLLength = 2048
	// DefaultMaxBytes is Config.MaxBytes when unset: TASK_MAX_ARTIFACT_MB's
	// default of 25 MiB.
	DefaultMaxBytes int64 = 25 << 20
	// DefaultMaxRedirects is Config.MaxRedirects when unset.
	DefaultMaxRedirects = 5
	// DefaultDialTimeout bounds one TCP connect when Config.DialTimeout is
	// unset.
	DefaultDialTimeout = 10 * time.Second
	// DefaultTLSHandshakeTimeout bounds a TLS handshake when
	// Config.TLSHandshakeTimeout is unset.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers
	// after the request is sent, when Config.ResponseHeaderTimeout is unset.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// UserAgent is sent with every request.
	UserAgent = "taskrunner-fetch/1 (+https://github.com/taskrunner/taskrunner)"
)

// Resolver resolves host names to addresses. *net.Resolver implements it;
// tests supply their own so no test needs real DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config is what a fetch may reach and how much it may read. The zero value
// allows no domain at all.
type Config struct {
	// Allowlist is FETCH_DOMAIN_ALLOWLIST: "*" allows any host (IP literals
	// included), "example.com" exactly that host, "*.example.com" any
	// subdomain of example.com at any depth but not example.com itself.
	// Entries are compared case-insensitively, without a trailing dot, in
	// IDNA ASCII form (an entry may be written in Unicode). IP literal
	// hosts are allowed only by "*". Entries that are not valid (see
	// Validate) match nothing.
	Allowlist []string
	// AllowlistSetting names the setting Allowlist comes from in refusals;
	// FETCH_DOMAIN_ALLOWLIST when empty (callbacks use their own).
	AllowlistSetting string
	// AllowedPorts are ports allowed besides 80 and 443.
	AllowedPorts []int
	// AllowPrivateNetworks (FETCH_ALLOW_PRIVATE_NETWORKS, off by default)
	// turns off the address-class check, so loopback, private and
	// link-local addresses may be fetched. Scheme, port and allowlist
	// checks still apply. For tests and trusted networks only.
	AllowPrivateNetworks bool
	// MaxBytes caps the body; 0 or less means DefaultMaxBytes.
	MaxBytes int64
	// MaxRedirects is how many redirects are followed; 0 means
	// DefaultMaxRedirects, a negative number none (the 3xx response is
	// returned as it is).
	MaxRedirects int
	// Resolver resolves host names at dial time; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// Logger gets fetch_host_refused, which tells apart the host names
	// that do not resolve and those refused for their address (the client
	// is told the same of both); nil logs nothing.
	Logger *slog.Logger
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound the
	// transport's steps, each within the context Fetch is given; 0 means
	// the Default of each.
	DialTimeout           time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
}

// Validate reports allowlist entries that match nothing and ports that
// cannot be, so start-up can refuse a mistyped FETCH_DOMAIN_ALLOWLIST.
func (c Config) Validate() error {
	_, errs := compileAllowlist(c.Allowlist, c.allowlistSetting())
	for _, p := range c.AllowedPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("allowed port %d is not a TCP port", p))
		}
	}
	return errors.Join(errs...)
}

// CheckURL is the submit-time check of a URL against cfg, without any
// network access: an absolute http or https URL of at most MaxURLLength
// bytes, with a host and without userinfo, on port 80, 443 or one of
// cfg.AllowedPorts, whose host cfg.Allowlist allows. An IP literal host in a
// non-public range, or a "localhost" name, is refused with
// address_not_allowed unless cfg.AllowPrivateNetworks; names are judged by
// what they resolve to only when fetched.
//
// It returns the URL with its host in canonical form (lower-case ASCII,
// punycode for international names, no trailing dot, a canonical port),
// which is what Fetch requests. Errors are *taskrunner.Error; every one is a client
// error (Rejected).
func CheckURL(raw string, cfg Config) (*url.URL, error) {
	return newPolicy(cfg).checkRaw(raw)
}

// allowlistSetting is the name refusals give the allowlist.
func (c Config) allowlistSetting() string {
	if c.AllowlistSetting == "" {
		return "FETCH_DOMAIN_ALLOWLIST"
	}
	return c.AllowlistSetting
}

// policy is a Config compiled for checking URLs and dial addresses.
type policy struct {
	allow        allowlist
	setting      string // the allowlist's setting, for refusals
	ports        map[int]bool
	allowPrivate bool
}

func newPolicy(cfg Config) *policy {
	p := &policy{ports: map[int]bool{80: true, 443: true}, allowPrivate: cfg.AllowPrivateNetworks, setting: cfg.allowlistSetting()}
	p.allow, _ = compileAllowlist(cfg.Allowlist, p.setting)
	for _, port := range cfg.AllowedPorts {
		p.ports[port] = true
	}
	return p
}

func (p *policy) checkRaw(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, errorf(taskrunner.CodeInvalidURL, fmt.Sprintf("the URL is longer than %d bytes", MaxURLLength), nil)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL cannot be parsed", nil)
	}
	return p.check(u)
}

// check checks a parsed URL (a first URL or a redirect target) and returns
// a canonical copy.
func (p *policy) check(u *url.URL) (*url.URL, error) {
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL must be absolute, with scheme http or https", nil)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL has no host", nil)
	}
	if u.User != nil {
		return nil, errorf(taskrunner.CodeInvalidURL, "the URL may not contain a user name or password", nil)
	}
	h, err := parseHost(u)
	if err != nil {
		return nil, err
	}
	port, err := urlPort(u)
	if err != nil {
		return nil, err
	}
	if !p.ports[port] {
		return nil, errorf(taskrunner.CodePortNotAllowed, fmt.Sprintf("port %d is not allowed: only 80, 443 and configured ports", port), nil)
	}
	if err := p.checkHost(h); err != nil {
		return nil, err
	}
	out := *u
	out.Host = h.String()
	if u.Port() != "" {
		out.Host += ":" + strconv.Itoa(port)
	}
	if s := out.String(); len(s) > MaxURLLength {
		return nil, errorf(taskrunner.CodeInvalidURL, fmt.Sprintf("the URL is longer than %d bytes", MaxURLLength), nil)
	}
	return &out, nil
}

// checkHost applies the allowlist and, for IP literals and localhost names,
// the address-class check.
func (p *policy) checkHost(h host) error {
	if !p.allow.allows(h) {
		if h.ip.IsValid() {
			return errorf(taskrunner.CodeDomainNotAllowed, fmt.Sprintf("IP address %s is not allowed: only %s=* allows IP addresses", h, p.setting), nil)
		}
		return errorf(taskrunner.CodeDomainNotAllowed, fmt.Sprintf("host %q is not allowed by %s", h.name, p.setting), nil)
	}
	if p.allowPrivate {
		return nil
	}
	if h.ip.IsValid() {
		if c := AddressClass(h.ip); c != "" {
			return errorf(taskrunner.CodeAddressNotAllowed, fmt.Sprintf("%s is a non-public address (%s)", h, c), nil)
		}
	} else if h.name == "localhost" || strings.HasSuffix(h.name, ".localhost") {
		return errorf(taskrunner.CodeAddressNotAllowed, fmt.Sprintf("host %q is a non-public address (loopback)", h.name), nil)
	}
	return nil
}

// checkPort says whether port may be connected to.
func (p *policy) checkPort(port int) error {
	if !p.ports[port] {
		return errorf(taskrunner.CodePortNotAllowed, fmt.Sprintf("port %d is not allowed: only 80, 443 and configured ports", port), nil)
	}
	return nil
}

// host is a URL's host in canonical form: either a name or an IP address.
type host struct {
	name string     // lower-case ASCII, no trailing dot; "" for an IP
	ip   netip.Addr // the literal, zone-free; invalid for a name
}

// String is the host as it goes in a URL's authority.
func (h host) String() string {
	switch {
	case !h.ip.IsValid():
		return h.name
	case h.ip.Is6():
		return "[" + h.ip.String() + "]"
	}
	return h.ip.String()
}

func invalidHost(msg string) *taskrunner.Error { return errorf(taskrunner.CodeInvalidURL, msg, nil) }

// parseHost canonicalises u's host.
func parseHost(u *url.URL) (host, error) {
	if strings.HasPrefix(u.Host, "[") {
		a, err := netip.ParseAddr(u.Hostname())
		if err != nil || !a.Is6() {
			return host{}, invalidHost("the URL's IPv6 address is not valid")
		}
		if a.Zone() != "" {
			return host{}, invalidHost("an IPv6 zone is not allowed in a URL")
		}
		return host{ip: a}, nil
	}
	return parseHostname(u.Hostname())
}

// parseHostname canonicalises a host name or IPv4 literal (an IPv6 literal
// without brackets, as a dial address carries it, is accepted too).
func parseHostname(s string) (host, error) {
	if s == "" {
		return host{}, invalidHost("the URL has no host")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return host{}, invalidHost("an IPv6 zone is not allowed in a URL")
		}
		return host{ip: a}, nil
	}
	name, err := canonicalName(s)
	if err != nil {
		return host{}, err
	}
	// A trailing dot or IDNA mapping (full-width digits and dots) can leave
	// an IPv4 address.
	if a, err := netip.ParseAddr(name); err == nil && a.Is4() {
		return host{ip: a}, nil
	}
	return host{name: name}, nil
}

// canonicalName returns a DNS name in lower-case ASCII (punycode for
// international labels) without a trailing dot, or an *taskrunner.Error.
func canonicalName(s string) (string, error) {
	if !isASCII(s) || strings.Contains(strings.ToLower(s), "xn--") {
		bad := invalidHost("the host is not a valid international domain name")
		if !utf8.ValidString(s) {
			return "", bad
		}
		a, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return "", bad
		}
		// The ASCII form must be stable: what is checked now is what the
		// next check, and the transport, will see.
		if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
			return "", bad
		}
		s = a
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" {
		return "", invalidHost("the URL has no host")
	}
	if len(s) > 253 {
		return "", invalidHost("the host name is longer than 253 characters")
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return s, nil // dotted IPv4, once the trailing dot or IDNA mapping is gone
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", invalidHost("the host name has an empty or over-long label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return "", invalidHost("the host name may contain only letters, digits, '-', '_' and '.'")
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		// Browsers and getaddrinfo read 127.1, 2130706433 and 0x7f.1 as
		// IPv4 addresses; no real domain ends in a number.
		return "", invalidHost("the host is an IPv4 address in a non-standard form")
	}
	return s, nil
}

// numericLabel says whether a label is a number in the WHATWG URL sense:
// decimal digits, or 0x followed by hex digits.
func numericLabel(l string) bool {
	digits := "0123456789"
	if strings.HasPrefix(l, "0x") {
		l, digits = l[2:], "0123456789abcdef"
		if l == "" {
			return true
		}
	}
	for i := 0; i < len(l); i++ {
		if !strings.ContainsRune(digits, rune(l[i])) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// urlPort is u's port, or its scheme's default.
func urlPort(u *url.URL) (int, error) {
	ps := u.Port()
	if ps == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.Atoi(ps)
	if err != nil || n < 1 || n > 65535 {
		return 0, errorf(taskrunner.CodeInvalidURL, "the URL's port is not a TCP port", nil)
	}
	return n, nil
}

// allowlist is FETCH_DOMAIN_ALLOWLIST compiled.
type allowlist struct {
	any      bool            // "*"
	exact    map[string]bool // "example.com"
	suffixes []string        // ".example.com" from "*.example.com"
}

func compileAllowlist(entries []string, setting string) (allowlist, []error) {
	a := allowlist{exact: map[string]bool{}}
	var errs []error
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case e == "*":
			a.any = true
			continue
		}
		wildcard := strings.HasPrefix(e, "*.")
		name := strings.TrimPrefix(e, "*.")
		h, err := parseHostname(name)
		if err == nil && h.ip.IsValid() {
			err = errors.New("IP addresses are allowed only by *")
		}
		if err == nil && strings.Contains(name, "*") {
			err = errors.New("* may only be a whole entry or a leading *.")
		}
		if err != nil {
			var fe *taskrunner.Error
			if errors.As(err, &fe) {
				err = errors.New(fe.Message)
			}
			errs = append(errs, fmt.Errorf("%s entry %q: %w", setting, e, err))
			continue
		}
		if wildcard {
			a.suffixes = append(a.suffixes, "."+h.name)
		} else {
			a.exact[h.name] = true
		}
	}
	return a, errs
}

func (a allowlist) allows(h host) bool {
	if a.any {
		return true
	}
	if h.ip.IsValid() {
		return false
	}
	if a.exact[h.name] {
		return true
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(h.name, s) {
			return true
		}
	}
	return false
}
