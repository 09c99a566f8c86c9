package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how a check stopped the test. Like testing.T, Fatal and Skip end the
// goroutine, so code after them does not run; run calls the check on a goroutine of its own.
type fakeTB struct {
	testing.TB // not set: calling another method panics
	fatal      string
	skip       string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls check with a fakeTB and returns it once check returned or stopped the test.
func run(check func(t testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(f)
	}()
	<-done
	return f
}

// TestMissing checks that a missing prerequisite fails the test when CI is set to anything
// non-empty, and skips it otherwise, with the message either way.
func TestMissing(t *testing.T) {
	for _, tt := range []struct {
		ci       string
		wantFail bool
	}{
		{"", false},
		{"true", true},
		{"1", true},
		{"false", true}, // set and non-empty: the rule is that simple
	} {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv(CIVar, tt.ci)
			if got := InCI(); got != tt.wantFail {
				t.Errorf("InCI() = %v, want %v", got, tt.wantFail)
			}
			returned := false
			f := run(func(t testing.TB) {
				Missing(t, "thing %d is missing; %s", 7, "provide it")
				returned = true
			})
			if returned {
				t.Error("Missing returned")
			}
			got, other := f.skip, f.fatal
			if tt.wantFail {
				got, other = f.fatal, f.skip
			}
			if !strings.Contains(got, "thing 7 is missing; provide it") {
				t.Errorf("fatal %q, skip %q: want the message in the %s", f.fatal, f.skip, map[bool]string{true: "failure", false: "skip"}[tt.wantFail])
			}
			if other != "" {
				t.Errorf("fatal %q, skip %q: want only one of them", f.fatal, f.skip)
			}
		})
	}
}

// listener returns the address of a loopback listener that accepts and closes connections,
// and the address of a port that nothing listens on.
func listener(t *testing.T, answer func(net.Conn)) (open, closed string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			answer(c)
			_ = c.Close()
		}
	}()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed = gone.Addr().String()
	_ = gone.Close()
	return ln.Addr().String(), closed
}

func TestTCP(t *testing.T) {
	t.Setenv(CIVar, "")
	open, closed := listener(t, func(net.Conn) {})
	if f := run(func(t testing.TB) { TCP(t, "Thing", open, "start it with: thing -d") }); f.skip != "" || f.fatal != "" {
		t.Errorf("TCP to a listening port: skip %q, fatal %q; want neither", f.skip, f.fatal)
	}
	f := run(func(t testing.TB) { TCP(t, "Thing", closed, "start it with: thing -d") })
	for _, want := range []string{"Thing is not reachable on " + closed, "start it with: thing -d"} {
		if !strings.Contains(f.skip, want) {
			t.Errorf("TCP to a closed port: skip %q, want it to say %q", f.skip, want)
		}
	}
}

// TestServices checks each service's check against this machine: it either returns the
// service's URL or skips naming the service and how to start it.
func TestServices(t *testing.T) {
	t.Setenv(CIVar, "")
	for _, tt := range []struct {
		name  string
		check func(testing.TB) string
		url   string
		howTo string
	}{
		{"NATS", NATS, "nats://127.0.0.1:4222", StartNATS},
		{"RabbitMQ", RabbitMQ, "amqp://guest:guest@127.0.0.1:5672/", StartRabbitMQ},
		{"RabbitMQ", RabbitMQ10, "amqp://guest:guest@127.0.0.1:5672/", "rabbitmq"},
		{"Mosquitto", Mosquitto, "tcp://127.0.0.1:1883", StartMosquitto},
		{"PostgreSQL", PostgreSQL, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", StartPostgreSQL},
	} {
		var url string
		f := run(func(t testing.TB) { url = tt.check(t) })
		switch {
		case f.fatal != "":
			t.Errorf("%s: fatal %q with CI unset", tt.name, f.fatal)
		case f.skip == "" && url != tt.url:
			t.Errorf("%s: URL %q, want %q", tt.name, url, tt.url)
		case f.skip != "" && (!strings.Contains(f.skip, tt.name) || !strings.Contains(f.skip, tt.howTo)):
			t.Errorf("%s: skip %q, want it to name the service and say %q", tt.name, f.skip, tt.howTo)
		case f.skip != "":
			t.Logf("%s is missing here: %s", tt.name, f.skip)
		}
	}
}

func TestAMQP10Handshake(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer string
		ok     bool
	}{
		{"AMQP 1.0", amqp10Header, true},
		{"AMQP 0-9-1 only", "AMQP\x00\x00\x09\x01", false},
		{"no answer", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			open, _ := listener(t, func(c net.Conn) {
				buf := make([]byte, len(amqp10Header))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != amqp10Header {
					return
				}
				_, _ = io.WriteString(c, tt.answer)
			})
			err := amqp10Handshake(open)
			if (err == nil) != tt.ok {
				t.Errorf("amqp10Handshake = %v, want success %v", err, tt.ok)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	t.Setenv(CIVar, "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var path string
	if f := run(func(t testing.TB) { path = Command(t, self) }); f.skip != "" || f.fatal != "" || path != self {
		t.Errorf("Command(%q) = %q, skip %q, fatal %q; want the path", self, path, f.skip, f.fatal)
	}
	for _, tt := range []struct{ name, hint string }{
		{"twinflow-no-such-program", "install it and put it on PATH"},
		{"/nonexistent/nats-server", "install it and put it on PATH"},
	} {
		f := run(func(t testing.TB) { Command(t, tt.name) })
		if !strings.Contains(f.skip, "program "+tt.name+" is not installed") || !strings.Contains(f.skip, tt.hint) {
			t.Errorf("Command(%q): skip %q, want it to name the program and say %q", tt.name, f.skip, tt.hint)
		}
	}
	for name, want := range map[string]string{
		"nats-server":      "apt-get install nats-server",
		"mosquitto_passwd": "apt-get install mosquitto",
		"node":             "Node.js 20",
		"chromium":         "apt-get install chromium",
	} {
		if got := installHint(name); !strings.Contains(got, want) {
			t.Errorf("installHint(%q) = %q, want it to say %q", name, got, want)
		}
	}
}
