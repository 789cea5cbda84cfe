package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrDestinationRefused is what a refused destination's error wraps. Its
// text is shown to the API's users, so it says how to lift the refusal.
var ErrDestinationRefused = errors.New("not a public address; a cluster admin may list it in the registry Config's allowed destinations (spec.webhooks.allowedDestinations for webhooks, spec.imageStreams.allowedImportDestinations for imports)")

// Destinations is the policy of where webhooks may be sent: anywhere
// public, and to the addresses and host names a cluster admin allowed.
// Without it a project admin could make the registry, which sits inside
// the cluster's network, send requests to services there (or to a cloud's
// metadata service) and learn from the results what answers.
//
// The policy is applied twice. CheckURL vets a URL when a webhook is
// created and before each delivery; DialContext vets the address each
// connection actually goes to, after its own resolution, because a name
// that resolved to a public address at check time may resolve to an
// internal one a moment later (DNS rebinding).
//
// A nil *Destinations allows no non-public destination.
type Destinations struct {
	prefixes []netip.Prefix
	// hosts are the listed host names, in lower case without a final dot.
	hosts map[string]bool
	// lookup resolves host names; tests replace it to play DNS.
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
}

// NewDestinations returns the policy that allows, besides public
// addresses, the allowed entries: CIDRs ("10.0.0.0/8", "fd00::/8"),
// single addresses ("127.0.0.1", "::1") and host names
// ("hooks.internal.example", which allows whatever the name resolves to).
// A host name is matched exactly, never as a suffix. An entry that is none
// of these is an error that names it.
func NewDestinations(allowed []string) (*Destinations, error) {
	d := &Destinations{hosts: map[string]bool{}}
	var errs []error
	for _, entry := range allowed {
		e := strings.TrimSpace(entry)
		switch {
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("webhook allowed destination %q: not a valid CIDR", entry))
				continue
			}
			p = p.Masked()
			// An IPv4-mapped prefix means the IPv4 addresses, which is
			// what addresses are compared as.
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			d.prefixes = append(d.prefixes, p)
		default:
			if a, err := netip.ParseAddr(e); err == nil {
				if a.Zone() != "" {
					errs = append(errs, fmt.Errorf("webhook allowed destination %q: an address with a zone cannot be allowed", entry))
					continue
				}
				a = a.Unmap()
				d.prefixes = append(d.prefixes, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			if !validHostName(e) {
				errs = append(errs, fmt.Errorf("webhook allowed destination %q: not a CIDR, an IP address or a host name", entry))
				continue
			}
			d.hosts[normalizeHost(e)] = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// validHostName reports whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens. A name whose last label is numeric is
// refused, as URL parsers do, since it is a mistyped address ("10.0.0.256")
// rather than a name.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// nonPublic are the ranges, besides those netip.Addr's predicates name
// (loopback, private, link-local, multicast, unspecified), that no public
// server is reached at.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, often a cluster's own
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("::/96"),           // unspecified, loopback, IPv4-compatible
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still routed by some)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
}

// IPv6 ranges whose addresses embed an IPv4 address that a gateway
// translates to: such an address is as public as the IPv4 one.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// isPublic reports whether a is an address of the public Internet.
func isPublic(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return isPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return isPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return true
}

// allowsAddr reports whether a may be connected to: it is public or
// inside an allowed range.
func (d *Destinations) allowsAddr(a netip.Addr) bool {
	if isPublic(a) {
		return true
	}
	if d == nil {
		return false
	}
	a = a.WithZone("")
	u := a.Unmap()
	for _, p := range d.prefixes {
		if p.Contains(u) || p.Contains(a) {
			return true
		}
	}
	return false
}

func (d *Destinations) allowsHost(host string) bool {
	return d != nil && d.hosts[normalizeHost(host)]
}

// resolveError is a failure to resolve a destination's name: unlike a
// refusal, it may pass.
type resolveError struct {
	host string
	err  error
}

func (e *resolveError) Error() string {
	why := e.err.Error()
	// A DNSError's text names the cluster's DNS server, which is none of
	// the API user's business.
	var dnsErr *net.DNSError
	if errors.As(e.err, &dnsErr) {
		switch {
		case dnsErr.IsNotFound:
			why = "no such host"
		case dnsErr.IsTimeout:
			why = "DNS timed out"
		default:
			why = dnsErr.Err
		}
	}
	return fmt.Sprintf("webhook destination %s could not be resolved: %s", e.host, why)
}

func (e *resolveError) Unwrap() error { return e.err }

// vet returns the addresses host stands for if every one of them may be
// connected to. An address is taken as it is; a listed host name is
// allowed whatever it resolves to; any other name is refused if any of its
// addresses is refused, rather than trimmed to its public ones, since a
// name that mixes internal addresses in is one to distrust.
func (d *Destinations) vet(ctx context.Context, host string) (addrs []netip.Addr, listed bool, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if !d.allowsAddr(a) {
			return nil, false, fmt.Errorf("webhook destination %s: %w", a, ErrDestinationRefused)
		}
		return []netip.Addr{a}, false, nil
	}
	lookup := net.DefaultResolver.LookupIPAddr
	if d != nil && d.lookup != nil {
		lookup = d.lookup
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, false, &resolveError{host: host, err: err}
	}
	if len(ips) == 0 {
		return nil, false, &resolveError{host: host, err: errors.New("no addresses")}
	}
	listed = d.allowsHost(host)
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			return nil, false, &resolveError{host: host, err: fmt.Errorf("invalid address %v", ip.IP)}
		}
		a = a.WithZone(ip.Zone)
		if !listed && !d.allowsAddr(a) {
			return nil, false, fmt.Errorf("webhook destination %s resolves to %s: %w", host, a, ErrDestinationRefused)
		}
		addrs = append(addrs, a)
	}
	return addrs, listed, nil
}

// CheckURL vets a webhook's URL: http or https, with a host, without user
// information, and whose host is a listed name or an address (or a name
// resolving only to addresses) that is public or allowed. A refusal wraps
// ErrDestinationRefused; a name that does not resolve is an error that
// says so (in a cluster that resolves no external name, where only the
// proxy does, a cluster admin must list the host names webhooks use). The
// error never repeats the URL, which may hold a token.
func (d *Destinations) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook URL is not valid: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "":
		return errors.New("webhook URL has no scheme: it must start with http:// or https://")
	default:
		return fmt.Errorf("webhook URL scheme %q is not allowed: use http or https", u.Scheme)
	}
	if u.User != nil {
		return errors.New("webhook URL must not contain user information (user:password@)")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("webhook URL has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("webhook URL port %q is not valid", p)
		}
	}
	if d.allowsHost(host) {
		return nil
	}
	_, _, err = d.vet(ctx, host)
	return err
}

// Control is a net.Dialer.Control that refuses to connect to an address
// that is neither public nor allowed. It knows addresses only, not the
// names they were resolved from, so it refuses the non-public addresses
// of listed host names: it is for dialers that only ever connect to
// vetted addresses of unlisted names, which is how DialContext uses it,
// as a last check on the very address the socket connects to.
func (d *Destinations) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook destination %s: not an address: %w", address, ErrDestinationRefused)
	}
	if !d.allowsAddr(ap.Addr()) {
		return fmt.Errorf("webhook destination %s: %w", ap.Addr(), ErrDestinationRefused)
	}
	return nil
}

// proxyAddrKey is the context key under which Sender.Send records the
// address ("host:port") of the proxy the transport will use for its
// request, which DialContext lets through.
type proxyAddrKey struct{}

// DialContext opens a connection to addr if the policy allows it; it is
// the transport's dialer for webhooks (NewSender installs it). It
// resolves the host itself, vets every address (see CheckURL), and
// connects to the vetted addresses only, so that no second resolution,
// which could answer differently, happens between the check and the
// connection.
//
// The one address it does not vet is that of the proxy in effect for the
// request, which Sender.Send records in the context: the proxy is the
// cluster admin's, and which server the proxy then connects to is out of
// the registry's sight. For proxied requests the protection is thus
// CheckURL, which Send runs before each delivery. Without the record (a
// dial for another caller) the proxy is vetted like any address, so a
// proxy in the cluster's network is refused unless listed: a mistake
// fails closed.
func (d *Destinations) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if p, _ := ctx.Value(proxyAddrKey{}).(string); p != "" && p == addr {
		return dialer.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("webhook destination %s: %w", addr, err)
	}
	addrs, listed, err := d.vet(ctx, host)
	if err != nil {
		return nil, err
	}
	if !listed {
		dialer.Control = d.Control
	}
	var firstErr error
	for _, a := range addrs {
		if network == "tcp4" && !a.Unmap().Is4() || network == "tcp6" && a.Is4() {
			continue
		}
		c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("webhook destination %s: no %s address", host, network)
	}
	return nil, firstErr
}

// Guard returns a transport that reaches only what d allows: a clone of
// t whose every dial d vets (the proxy t names for a request excepted, as
// for webhooks), whatever host a request, a redirect or a token realm
// names. Other outbound calls that tenants steer (image imports,
// pull-through) go through it, so that none can reach the cluster's own
// network unless a cluster admin allowed it.
func (d *Destinations) Guard(t *http.Transport) http.RoundTripper {
	c := t.Clone()
	c.DialContext = d.DialContext
	c.DialTLSContext = nil
	//lint:ignore SA1019 a deprecated hook left set would bypass the guard
	c.DialTLS = nil
	//lint:ignore SA1019 a deprecated hook left set would bypass the guard
	c.Dial = nil
	return &guarded{t: c}
}

type guarded struct{ t *http.Transport }

func (g *guarded) RoundTrip(req *http.Request) (*http.Response, error) {
	if p := proxyAddrFor(g.t, req); p != "" {
		req = req.WithContext(context.WithValue(req.Context(), proxyAddrKey{}, p))
	}
	return g.t.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the transport.
func (g *guarded) CloseIdleConnections() { g.t.CloseIdleConnections() }
