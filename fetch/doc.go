// Package fetch fetches one URL on behalf of a client, for the `fetch` task.
//
// # Threat model
//
// The URL comes from whoever may submit tasks, and the fetch runs inside the
// worker's network, which usually reaches things the client must not:
// loopback services, the database, Redis, MinIO, other hosts on private
// networks, and the cloud metadata service at 169.254.169.254 (which hands
// out credentials). The package's job is to make sure a fetch only ever
// talks to a public address of a host the operator allowed, and cannot be
// made to exhaust the worker's memory, disk or time.
//
// The defences, in the order a request meets them:
//
//   - CheckURL, a pure function run at submit time and again before every
//     request and every redirect: an absolute http or https URL of bounded
//     length, without userinfo, on port 80 or 443 (or one the operator
//     added), whose host is allowed by FETCH_DOMAIN_ALLOWLIST. Hosts are
//     compared in one canonical form (lower-case ASCII, IDNA/punycode, no
//     trailing dot) and the URL is rewritten to that form, so what is
//     checked is what is requested. IP literal hosts are allowed only by
//     "*", and non-standard IPv4 spellings (2130706433, 0x7f.1, 127.1) are
//     refused outright rather than left to a resolver to interpret.
//   - At dial time, whatever DNS says: the name is resolved by the fetcher
//     itself, every address it resolves to is classified, and the connection
//     is made to the checked IP literal, never to the name, so DNS rebinding
//     between a check and a connect is impossible. A net.Dialer Control
//     function checks the socket address actually being connected once more.
//     Loopback, private, shared (CGNAT), link-local (metadata), unique-local,
//     unspecified, multicast, broadcast, documentation, benchmarking and
//     other reserved ranges are refused, in IPv4, IPv6, IPv4-mapped IPv6 and
//     NAT64 forms (see AddressClass).
//   - No proxy from the environment (HTTP_PROXY would connect to the target
//     on the fetcher's behalf, after the checks), no cookie jar, at most
//     Config.MaxRedirects redirects, each re-checked like the first URL.
//   - A body capped at Config.MaxBytes: a declared Content-Length above it
//     fails at once, and reading past it fails with ErrTooLarge, whatever
//     the server declared or compressed.
//   - The caller's context bounds the whole fetch, body included, and the
//     transport has its own dial, TLS handshake and response header
//     timeouts.
//
// Config.AllowPrivateNetworks (FETCH_ALLOW_PRIVATE_NETWORKS) turns off the
// address-class check only, for tests and trusted deployments; every other
// check still applies.
//
// Errors are *taskrunner.Error values with stable snake_case codes (see
// errors.go) and messages that are safe to show to the client: they name
// hosts and the classes of IP literals, never resolved addresses, paths,
// query strings or server internals. A host name that does not resolve
// and one that resolves to a non-public address get one and the same
// answer (UnreachableMessage), so a client cannot map the names of the
// worker's network; only the log (fetch_host_refused) tells them apart.
// What a client can still observe is time: how long the resolver took.
package fetch
