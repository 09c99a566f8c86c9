// Package netpolicy decides what the connectors of endpoints and sources may reach: the
// network addresses they dial and the local files their settings name (TLS certificates and
// keys, NATS credentials). It guards against server-side request forgery: a user who may
// define an endpoint or a source must not be able to make twinflow connect to a cloud
// metadata service, to twinflow's own listener, or, where the operator says so, to loopback
// and private addresses, nor read files outside the directories the operator names.
//
// A Policy is checked twice: when a definition is created or updated (CheckReach, which
// resolves host names to give early feedback), and when a connection is made, on the address
// actually dialled after resolution (Dialer's Control hook), so a name that resolves to an
// allowed address at validation and to a denied one later (DNS rebinding) is still refused.
//
// # Addresses
//
// In this order, an address is
//
//  1. denied if it is in Config.Deny;
//  2. denied if it is unspecified (0.0.0.0/8, ::), multicast or the IPv4 broadcast
//     address, which no destination legitimately has (0.0.0.0 reaches the local host);
//  3. denied if it is the server's own listener (Config.Self), unless Config.AllowSelf;
//  4. allowed if it is in Config.Allow;
//  5. denied if it is a cloud metadata address (169.254.169.254, fd00:ec2::254,
//     100.100.100.200, 168.63.129.16) or link-local (169.254.0.0/16, fe80::/10);
//  6. denied if it is loopback (127.0.0.0/8, ::1) and Config.DenyLoopback is set;
//  7. denied if it is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, and the
//     shared address space 100.64.0.0/10) and Config.DenyPrivate is set;
//  8. allowed otherwise.
//
// Loopback and private addresses are allowed by default because brokers usually live there.
// Host names of metadata services (metadata.google.internal, metadata.goog) are denied by
// name too. IPv4-mapped IPv6 addresses are checked as the IPv4 address they map.
//
// A nil *Policy allows every address and file: it is what connectors use when built without
// one (in tests, and by callers that do their own checks).
package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrDenied is wrapped by every error that refuses an address or a file.
var ErrDenied = errors.New("not allowed by the egress policy")

// DefaultLookupTimeout bounds the name resolution of CheckReach when Config.LookupTimeout is
// zero, so that validating a definition never waits long for DNS.
const DefaultLookupTimeout = 2 * time.Second

// Resolver resolves host names to addresses; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Policy.
type Config struct {
	// DenyLoopback denies loopback addresses (127.0.0.0/8, ::1).
	DenyLoopback bool
	// DenyPrivate denies private addresses (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
	// fc00::/7, 100.64.0.0/10).
	DenyPrivate bool
	// Allow lists prefixes ("10.1.0.0/16") or addresses ("10.1.2.3") allowed even where a
	// category above denies them; Deny lists those denied whatever else says (see the
	// package documentation for the order).
	Allow, Deny []string
	// Self are the server's own listening addresses, denied unless AllowSelf. One with an
	// unspecified address (listening on all interfaces) stands for its port on loopback and
	// on every address of the machine's interfaces.
	Self []netip.AddrPort
	// AllowSelf allows connections to Self.
	AllowSelf bool
	// FileDirs are the directories files named in settings must be in (after resolving
	// symbolic links). None means no file may be named.
	FileDirs []string
	// Resolver resolves names when a definition is checked; nil means net.DefaultResolver.
	// Connections resolve names as the connector's client does, and are checked on the
	// address dialled.
	Resolver Resolver
	// LookupTimeout bounds a resolution when a definition is checked; zero means
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
}

// Policy decides what connectors may reach. Its methods are safe for concurrent use.
type Policy struct {
	denyLoopback, denyPrivate bool
	allow, deny               []netip.Prefix
	self                      []netip.AddrPort
	allowSelf                 bool
	// local are the machine's interface addresses, for a Self that listens on all of them.
	local    []netip.Addr
	dirs     []string
	resolver Resolver
	timeout  time.Duration
}

// New returns the policy of cfg. It fails on a prefix it cannot parse.
func New(cfg Config) (*Policy, error) {
	p := &Policy{
		denyLoopback: cfg.DenyLoopback, denyPrivate: cfg.DenyPrivate,
		allowSelf: cfg.AllowSelf, resolver: cfg.Resolver, timeout: cfg.LookupTimeout,
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.timeout <= 0 {
		p.timeout = DefaultLookupTimeout
	}
	var errs []error
	parse := func(list []string, what string) []netip.Prefix {
		var out []netip.Prefix
		for i, s := range list {
			pfx, err := ParsePrefix(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", what, i, err))
				continue
			}
			out = append(out, pfx)
		}
		return out
	}
	p.allow = parse(cfg.Allow, "allow")
	p.deny = parse(cfg.Deny, "deny")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, s := range cfg.Self {
		s = netip.AddrPortFrom(s.Addr().Unmap().WithZone(""), s.Port())
		p.self = append(p.self, s)
		if s.Addr().IsUnspecified() && p.local == nil {
			p.local = interfaceAddrs()
		}
	}
	for _, d := range cfg.FileDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("file directory %q: %w", d, err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		p.dirs = append(p.dirs, abs)
	}
	return p, nil
}

// ParsePrefix reads a prefix ("10.0.0.0/8", "fd00::/8") or a single address ("10.1.2.3"),
// which stands for itself alone.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix such as 10.0.0.0/8", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix such as 10.0.0.0/8", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// interfaceAddrs returns the addresses of the machine's interfaces; none if they cannot be
// listed.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// The addresses of cloud metadata services: AWS, GCP and Azure (169.254.169.254, link-local
// anyway), AWS over IPv6, Alibaba Cloud, and Azure's host endpoint (WireServer).
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
	netip.MustParseAddr("168.63.129.16"),
}

// metadataNames are the host names of cloud metadata services.
var metadataNames = []string{"metadata.google.internal", "metadata.goog"}

// sharedSpace is the shared address space of carrier-grade NAT (RFC 6598), private in
// practice.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// nat64 is the well-known prefix of NAT64 (RFC 6052), whose addresses embed an IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// thisNetwork is 0.0.0.0/8, where only 0.0.0.0 is usable, and reaches the local host.
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// DeniedError is the refusal of an address or a file. It wraps ErrDenied.
type DeniedError struct {
	// What is the address (host:port) or file refused.
	What string
	// Why names the rule that refused it.
	Why string
}

func (e *DeniedError) Error() string { return e.What + " is " + ErrDenied.Error() + ": " + e.Why }

// Unwrap returns ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// CheckIP reports whether a connection to ip on port is allowed: nil, or a *DeniedError.
func (p *Policy) CheckIP(ip netip.Addr, port uint16) error {
	if p == nil {
		return nil
	}
	if why := p.why(ip.Unmap().WithZone(""), port); why != "" {
		return &DeniedError{What: netip.AddrPortFrom(ip.WithZone(""), port).String(), Why: why}
	}
	return nil
}

// why returns the rule that denies ip on port, "" when it is allowed.
func (p *Policy) why(ip netip.Addr, port uint16) string {
	if !ip.IsValid() {
		return "not an IP address"
	}
	if nat64.Contains(ip) {
		// The IPv4 address a NAT64 gateway translates it to is what is reached.
		b := ip.As16()
		if why := p.why(netip.AddrFrom4([4]byte(b[12:])), port); why != "" {
			return why + " (through NAT64)"
		}
	}
	if containsAddr(p.deny, ip) {
		return "it is in the deny list"
	}
	if ip.IsUnspecified() || thisNetwork.Contains(ip) || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "an unspecified, multicast or broadcast address"
	}
	if !p.allowSelf && p.isSelf(ip, port) {
		return "twinflow's own listener"
	}
	if containsAddr(p.allow, ip) {
		return ""
	}
	switch {
	case slices.Contains(metadataAddrs, ip):
		return "a cloud metadata address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsLoopback() && p.denyLoopback:
		return "a loopback address, denied by denyLoopback"
	case (ip.IsPrivate() || sharedSpace.Contains(ip)) && p.denyPrivate:
		return "a private address, denied by denyPrivate"
	}
	return ""
}

// isSelf reports whether ip:port is one of the server's listeners.
func (p *Policy) isSelf(ip netip.Addr, port uint16) bool {
	for _, s := range p.self {
		if s.Port() != port {
			continue
		}
		switch {
		case s.Addr() == ip:
			return true
		case s.Addr().IsUnspecified() && (ip.IsLoopback() || slices.Contains(p.local, ip)):
			return true
		}
	}
	return false
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, pfx := range prefixes {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckAddress checks the address host:port a definition names, before any connection: an
// IP address by the rules of the package documentation, a host name by name and by every
// address it resolves to now. A name that does not resolve (yet) passes, since its
// connections are checked again on the addresses they dial.
func (p *Policy) CheckAddress(ctx context.Context, hostport string) error {
	if p == nil {
		return nil
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not host:port", hostport)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("%q: the port is not a number from 0 to 65535", hostport)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.CheckIP(ip, uint16(port))
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if slices.Contains(metadataNames, name) {
		return &DeniedError{What: hostport, Why: "a cloud metadata service"}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ips, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if why := p.why(ip.Unmap().WithZone(""), uint16(port)); why != "" {
			return &DeniedError{What: hostport, Why: "it resolves to " + ip.String() + ", " + why}
		}
	}
	return nil
}

// CheckFile checks that path, once made absolute and its symbolic links resolved, lies in
// one of the policy's directories. A path that does not exist is checked as written.
func (p *Policy) CheckFile(path string) error {
	if p == nil || path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return &DeniedError{What: strconv.Quote(path), Why: "it cannot be made absolute"}
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	} else if !errors.Is(err, os.ErrNotExist) {
		return &DeniedError{What: strconv.Quote(path), Why: "its symbolic links cannot be resolved"}
	}
	for _, dir := range p.dirs {
		if rel, err := filepath.Rel(dir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return nil
		}
	}
	return &DeniedError{What: strconv.Quote(path), Why: "it is outside the directories files may be read from (server.fileDirs)"}
}

// Named is an address or a file a definition names, with the field that names it ("url",
// "brokers[1]", "tls.caFile").
type Named struct {
	Field, Value string
}

// Reach is what one endpoint's or source's settings reach.
type Reach struct {
	// Addrs are the addresses its connections dial, host:port.
	Addrs []Named
	// Files are the local files it reads.
	Files []Named
}

// SameAddrs reports whether r and o dial the same set of addresses.
func (r Reach) SameAddrs(o Reach) bool {
	set := func(ns []Named) []string {
		out := make([]string, 0, len(ns))
		for _, n := range ns {
			out = append(out, strings.ToLower(n.Value))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(set(r.Addrs), set(o.Addrs))
}

// CheckReach checks every address (CheckAddress) and file (CheckFile) of r and reports every
// refusal, each prefixed with its field. Its resolutions together take at most the lookup
// timeout.
func (p *Policy) CheckReach(ctx context.Context, r Reach) error {
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var errs []error
	for _, a := range r.Addrs {
		if err := p.CheckAddress(ctx, a.Value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Field, err))
		}
	}
	for _, f := range r.Files {
		if err := p.CheckFile(f.Value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Field, err))
		}
	}
	return errors.Join(errs...)
}

// control is the Control hook of the policy's dialers: it checks the address about to be
// connected to, after resolution.
func (p *Policy) control(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &DeniedError{What: address, Why: "not an IP address and port"}
	}
	return p.CheckIP(ap.Addr(), ap.Port())
}

// Dialer returns a dialer with timeout (0: none but the context's) whose connections are
// checked against p on the address they dial, whatever name they were asked for. A nil p
// returns a plain dialer.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if p != nil {
		d.ControlContext = p.control
	}
	return d
}
