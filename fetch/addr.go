package fetch

import "net/netip"

// addrClass is a non-public range and the name a refusal gives it.
type addrClass struct {
	prefix netip.Prefix
	name   string
}

func class(prefix, name string) addrClass {
	return addrClass{prefix: netip.MustParsePrefix(prefix), name: name}
}

// blockedV4 are the IPv4 ranges a fetch may not reach (RFC 6890 and the
// IANA special-purpose registry), most specific first.
var blockedV4 = []addrClass{
	class("169.254.169.254/32", "cloud metadata"),
	class("255.255.255.255/32", "broadcast"),
	class("0.0.0.0/8", "unspecified"), // "this network"; 0.0.0.0 dials the local host
	class("10.0.0.0/8", "private"),
	class("100.64.0.0/10", "shared (carrier-grade NAT)"),
	class("127.0.0.0/8", "loopback"),
	class("169.254.0.0/16", "link-local"),
	class("172.16.0.0/12", "private"),
	class("192.0.0.0/24", "IETF protocol assignment"),
	class("192.0.2.0/24", "documentation"),
	class("192.88.99.0/24", "6to4 relay anycast"),
	class("192.168.0.0/16", "private"),
	class("198.18.0.0/15", "benchmarking"),
	class("198.51.100.0/24", "documentation"),
	class("203.0.113.0/24", "documentation"),
	class("224.0.0.0/4", "multicast"),
	class("240.0.0.0/4", "reserved"),
}

// blockedV6 are the IPv6 ranges a fetch may not reach, most specific first.
// IPv4-mapped addresses are unmapped and NAT64 addresses are judged by the
// IPv4 address they carry before this table is consulted; anything outside
// global unicast 2000::/3 is refused as well.
var blockedV6 = []addrClass{
	class("::/128", "unspecified"),
	class("::1/128", "loopback"),
	class("::/96", "IPv4-compatible"), // deprecated; may reach the embedded IPv4 address
	class("64:ff9b:1::/48", "local-use NAT64"),
	class("100::/64", "discard-only"),
	class("2001::/23", "IETF protocol assignment"), // Teredo, benchmarking, ORCHID, ...
	class("2001:db8::/32", "documentation"),
	class("2002::/16", "6to4"), // embeds an IPv4 address, possibly a private one
	class("3fff::/20", "documentation"),
	class("fc00::/7", "unique local"),
	class("fe80::/10", "link-local"),
	class("fec0::/10", "site-local"),
	class("ff00::/8", "multicast"),
}

var (
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// AddressClass names the non-public class a belongs to ("loopback",
// "private", "link-local", "cloud metadata", "NAT64-mapped loopback", ...),
// or returns "" for a public address a fetch may reach. IPv4-mapped IPv6
// addresses (::ffff:127.0.0.1) are judged as the IPv4 address they map,
// NAT64 addresses (64:ff9b::/96) by the IPv4 address they embed, and a zone
// is ignored. An invalid address is "invalid".
func AddressClass(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		for _, c := range blockedV4 {
			if c.prefix.Contains(a) {
				return c.name
			}
		}
		return ""
	}
	if nat64.Contains(a) {
		b := a.As16()
		if c := AddressClass(netip.AddrFrom4([4]byte(b[12:]))); c != "" {
			return "NAT64-mapped " + c
		}
		return ""
	}
	for _, c := range blockedV6 {
		if c.prefix.Contains(a) {
			return c.name
		}
	}
	if !globalUnicast.Contains(a) {
		return "reserved"
	}
	return ""
}
