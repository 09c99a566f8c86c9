package sinktest

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/netpolicy"
)

// Listener accepts TCP connections on 127.0.0.1 and closes each at once, counting them: a
// destination a connector must not reach, to check that an egress policy stops its
// connections before they are made.
type Listener struct {
	ln       net.Listener
	accepted atomic.Int32
}

// NewListener starts a Listener, closed when the test ends.
func NewListener(t testing.TB) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	return l
}

// Addr returns the listener's address, 127.0.0.1:port.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Port returns the listener's port.
func (l *Listener) Port() string {
	_, port, _ := net.SplitHostPort(l.Addr())
	return port
}

// Accepted returns the number of connections accepted so far.
func (l *Listener) Accepted() int { return int(l.accepted.Load()) }

// WaitAccepted waits up to five seconds for a connection to be accepted, and fails t if
// none is: it shows that what a test found refused would otherwise have connected.
func (l *Listener) WaitAccepted(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); l.Accepted() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no connection reached the listener")
		}
	}
}

// noNames resolves no name, as a name that does not resolve yet when a definition is checked.
type noNames struct{}

func (noNames) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// DenyLoopback returns a policy that denies loopback addresses and resolves no name when a
// definition is checked. A definition naming "localhost" passes its check and is refused
// when its connector dials 127.0.0.1: the case of a name that resolves elsewhere at first and
// to a denied address later (DNS rebinding), which only the check of every dial stops.
func DenyLoopback(t testing.TB) *netpolicy.Policy {
	t.Helper()
	p, err := netpolicy.New(netpolicy.Config{DenyLoopback: true, Resolver: noNames{}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
