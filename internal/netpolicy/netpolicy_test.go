package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func mustNew(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestCheckIP(t *testing.T) {
	self := netip.MustParseAddrPort("127.0.0.1:8080")
	tests := []struct {
		name string
		cfg  Config
		addr string
		why  string // "" when allowed
	}{
		{"public", Config{}, "203.0.113.7:443", ""},
		{"loopback allowed by default", Config{}, "127.0.0.1:5672", ""},
		{"ipv6 loopback allowed by default", Config{}, "[::1]:4222", ""},
		{"private allowed by default", Config{}, "10.1.2.3:9092", ""},
		{"metadata", Config{}, "169.254.169.254:80", "cloud metadata"},
		{"aws ipv6 metadata", Config{}, "[fd00:ec2::254]:80", "cloud metadata"},
		{"alibaba metadata", Config{}, "100.100.100.200:80", "cloud metadata"},
		{"azure wireserver", Config{}, "168.63.129.16:80", "cloud metadata"},
		{"link-local", Config{}, "169.254.10.1:80", "link-local"},
		{"ipv6 link-local", Config{}, "[fe80::1]:80", "link-local"},
		{"ipv4-mapped metadata", Config{}, "[::ffff:169.254.169.254]:80", "cloud metadata"},
		{"nat64 metadata", Config{}, "[64:ff9b::a9fe:a9fe]:80", "cloud metadata"},
		{"unspecified", Config{}, "0.0.0.0:80", "unspecified"},
		{"this network", Config{}, "0.1.2.3:80", "unspecified"},
		{"ipv6 unspecified", Config{}, "[::]:80", "unspecified"},
		{"multicast", Config{}, "224.0.0.1:80", "multicast"},
		{"broadcast", Config{}, "255.255.255.255:80", "broadcast"},
		{"denyLoopback", Config{DenyLoopback: true}, "127.0.0.2:1883", "loopback"},
		{"denyLoopback ipv6", Config{DenyLoopback: true}, "[::1]:1883", "loopback"},
		{"denyPrivate", Config{DenyPrivate: true}, "192.168.1.5:1883", "private"},
		{"denyPrivate ula", Config{DenyPrivate: true}, "[fd12::5]:1883", "private"},
		{"denyPrivate shared space", Config{DenyPrivate: true}, "100.64.1.1:1883", "private"},
		{"denyPrivate leaves loopback", Config{DenyPrivate: true}, "127.0.0.1:1883", ""},
		{"allow overrides denyPrivate", Config{DenyPrivate: true, Allow: []string{"10.1.0.0/16"}}, "10.1.2.3:9092", ""},
		{"allow is exact", Config{DenyPrivate: true, Allow: []string{"10.1.0.0/16"}}, "10.2.2.3:9092", "private"},
		{"allow overrides link-local", Config{Allow: []string{"169.254.10.1"}}, "169.254.10.1:80", ""},
		{"deny wins over allow", Config{Allow: []string{"203.0.113.0/24"}, Deny: []string{"203.0.113.7"}}, "203.0.113.7:443", "deny list"},
		{"deny ipv6 prefix", Config{Deny: []string{"2001:db8::/32"}}, "[2001:db8::1]:443", "deny list"},
		{"own listener", Config{Self: []netip.AddrPort{self}}, "127.0.0.1:8080", "own listener"},
		{"own listener, other port", Config{Self: []netip.AddrPort{self}}, "127.0.0.1:8081", ""},
		{"own listener, allow does not override", Config{Self: []netip.AddrPort{self}, Allow: []string{"127.0.0.0/8"}}, "127.0.0.1:8080", "own listener"},
		{"own listener allowed", Config{Self: []netip.AddrPort{self}, AllowSelf: true}, "127.0.0.1:8080", ""},
		{"own listener on all interfaces, loopback", Config{Self: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:8080")}}, "127.0.0.9:8080", "own listener"},
		{"own listener on all interfaces, ipv6 loopback", Config{Self: []netip.AddrPort{netip.MustParseAddrPort("[::]:8080")}}, "[::1]:8080", "own listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.cfg)
			ap := netip.MustParseAddrPort(tt.addr)
			err := p.CheckIP(ap.Addr(), ap.Port())
			if tt.why == "" {
				if err != nil {
					t.Fatalf("CheckIP(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("CheckIP(%s) = %v, want denied for %q", tt.addr, err, tt.why)
			}
		})
	}
}

func TestNilPolicyAllowsEverything(t *testing.T) {
	var p *Policy
	if err := p.CheckIP(netip.MustParseAddr("169.254.169.254"), 80); err != nil {
		t.Errorf("CheckIP: %v", err)
	}
	if err := p.CheckFile("/etc/passwd"); err != nil {
		t.Errorf("CheckFile: %v", err)
	}
	if d := p.Dialer(time.Second); d.ControlContext != nil || d.Control != nil {
		t.Error("a nil policy's dialer has a control hook")
	}
}

func TestNewRefusesBadPrefixes(t *testing.T) {
	_, err := New(Config{Allow: []string{"10.0.0.0/8", "ten"}, Deny: []string{"1.2.3.4/33"}})
	if err == nil || !strings.Contains(err.Error(), `allow[1]: "ten"`) || !strings.Contains(err.Error(), `deny[0]: "1.2.3.4/33"`) {
		t.Fatalf("New = %v, want both bad entries named", err)
	}
}

// resolver answers every name from a table; a missing name does not resolve.
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestCheckAddress(t *testing.T) {
	p := mustNew(t, Config{DenyLoopback: true, Resolver: resolver{
		"broker.example": {netip.MustParseAddr("203.0.113.9")},
		"rebind.example": {netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("169.254.169.254")},
		"local.example":  {netip.MustParseAddr("127.0.0.1")},
	}})
	tests := []struct {
		addr, want string // want: "" when allowed, else a substring of the error
	}{
		{"broker.example:9092", ""},
		{"203.0.113.9:9092", ""},
		{"unknown.example:9092", ""}, // checked again when connecting
		{"rebind.example:80", "resolves to 169.254.169.254, a cloud metadata address"},
		{"local.example:80", "resolves to 127.0.0.1, a loopback address"},
		{"metadata.google.internal:80", "cloud metadata service"},
		{"METADATA.google.internal.:80", "cloud metadata service"},
		{"169.254.169.254:80", "cloud metadata address"},
		{"[::1]:80", "loopback"},
		{"[fe80::1%eth0]:80", "link-local"},
		{"no-port", "not host:port"},
		{"h:99999", "port"},
	}
	for _, tt := range tests {
		err := p.CheckAddress(context.Background(), tt.addr)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckAddress(%s) = %v, want allowed", tt.addr, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckAddress(%s) = %v, want an error with %q", tt.addr, err, tt.want)
		}
	}
}

// slowResolver never answers before its context ends.
type slowResolver struct{}

func (slowResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCheckAddressBoundsTheLookup(t *testing.T) {
	p := mustNew(t, Config{Resolver: slowResolver{}, LookupTimeout: 50 * time.Millisecond})
	start := time.Now()
	if err := p.CheckAddress(context.Background(), "slow.example:80"); err != nil {
		t.Fatalf("CheckAddress = %v, want a name that does not resolve in time to pass", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("CheckAddress took %v", d)
	}
	// The resolutions of one definition share the timeout.
	start = time.Now()
	var addrs []Named
	for i := range 10 {
		addrs = append(addrs, Named{Field: "brokers", Value: "slow" + string(rune('a'+i)) + ".example:9092"})
	}
	if err := p.CheckReach(context.Background(), Reach{Addrs: addrs}); err != nil {
		t.Fatalf("CheckReach = %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("CheckReach of ten slow names took %v", d)
	}
}

func TestCheckReachNamesFields(t *testing.T) {
	dir := t.TempDir()
	p := mustNew(t, Config{FileDirs: []string{dir}})
	err := p.CheckReach(context.Background(), Reach{
		Addrs: []Named{{"brokers[0]", "127.0.0.1:9092"}, {"brokers[1]", "169.254.169.254:9092"}},
		Files: []Named{{"tls.caFile", filepath.Join(dir, "ca.pem")}, {"tls.keyFile", "/etc/shadow"}},
	})
	if err == nil || !strings.Contains(err.Error(), "brokers[1]: 169.254.169.254:9092 is not allowed") ||
		!strings.Contains(err.Error(), `tls.keyFile: "/etc/shadow" is not allowed`) ||
		strings.Contains(err.Error(), "brokers[0]") || strings.Contains(err.Error(), "caFile") {
		t.Fatalf("CheckReach = %v", err)
	}
}

func TestCheckFile(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	write := func(path string) string {
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	inside := write(filepath.Join(allowed, "ca.pem"))
	secret := write(filepath.Join(outside, "key.pem"))
	link := filepath.Join(allowed, "link.pem")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(allowed, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := mustNew(t, Config{FileDirs: []string{allowed}})
	tests := []struct {
		path string
		ok   bool
	}{
		{inside, true},
		{filepath.Join(allowed, "sub", "missing.pem"), true},
		{filepath.Join(allowed, "sub", "..", "ca.pem"), true},
		{secret, false},
		{link, false}, // a link out of the directory is where it points
		{filepath.Join(allowed, "..", filepath.Base(outside), "key.pem"), false},
		{allowed + "-other/x.pem", false},
		{"/etc/passwd", false},
	}
	for _, tt := range tests {
		err := p.CheckFile(tt.path)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Errorf("CheckFile(%s) = %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
	if err := mustNew(t, Config{}).CheckFile(inside); err == nil {
		t.Error("a policy without directories allowed a file")
	}
}

// listener accepts connections on 127.0.0.1 and counts them.
func listener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), accepted
}

func TestDialerChecksTheAddressDialled(t *testing.T) {
	addr, accepted := listener(t)
	_, port, _ := net.SplitHostPort(addr)
	// The name passes the check of the definition (it does not resolve then), and resolves to
	// loopback when dialled: the dialer refuses it.
	p := mustNew(t, Config{DenyLoopback: true, Resolver: resolver{}})
	if err := p.CheckAddress(context.Background(), "localhost:"+port); err != nil {
		t.Fatalf("CheckAddress = %v", err)
	}
	for _, target := range []string{addr, "localhost:" + port} {
		c, err := p.Dialer(time.Second).DialContext(context.Background(), "tcp", target)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s: connected", target)
		}
		if !errors.Is(err, ErrDenied) {
			t.Fatalf("dial %s = %v, want ErrDenied", target, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the listener accepted %d connections", n)
	}
	// The same dialer under a policy that allows loopback connects.
	c, err := mustNew(t, Config{}).Dialer(time.Second).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial allowed: %v", err)
	}
	c.Close()
}

func TestReachSameAddrs(t *testing.T) {
	a := Reach{Addrs: []Named{{"brokers[0]", "a:1"}, {"brokers[1]", "B:2"}}}
	if !a.SameAddrs(Reach{Addrs: []Named{{"brokers[0]", "b:2"}, {"brokers[1]", "a:1"}}}) {
		t.Error("the same addresses in another order differ")
	}
	if a.SameAddrs(Reach{Addrs: []Named{{"brokers[0]", "a:1"}}}) {
		t.Error("fewer addresses are the same")
	}
}
