// Package testenv is test support only, for _test.go files: it checks the prerequisites a
// test needs from outside the Go toolchain (a service on the loopback interface, a program on
// PATH, a checked-out corpus) and reports a missing one the same way everywhere.
//
// A missing prerequisite skips the test with a message that says what is missing and how to
// provide it, except under CI: when the environment variable CI is set to any non-empty value
// (.ci/run exports CI=true), it fails the test instead, so that a CI machine lacking a service
// cannot pass by skipping. No prerequisite is skipped silently.
package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The loopback addresses of the services the tests talk to: each service's standard port.
const (
	NATSAddr       = "127.0.0.1:4222"
	RabbitMQAddr   = "127.0.0.1:5672"
	MosquittoAddr  = "127.0.0.1:1883"
	PostgreSQLAddr = "127.0.0.1:5432"
)

// The commands that start each service on a Debian machine, as .ci/run runs them.
const (
	StartNATS = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- " +
		"-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
	StartRabbitMQ   = "rabbitmq-server -detached"
	EnableAMQP10    = "rabbitmq-plugins enable rabbitmq_amqp1_0"
	StartMosquitto  = "mosquitto -d -c /etc/mosquitto/mosquitto.conf"
	StartPostgreSQL = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)

// DialTimeout bounds each connection attempt of a service check. The services are on the
// loopback interface, where a closed port is refused at once.
const DialTimeout = 2 * time.Second

// CIVar is the environment variable that, set to any non-empty value, turns a missing
// prerequisite from a skip into a failure.
const CIVar = "CI"

// InCI reports whether the environment variable CI is set to a non-empty value.
func InCI() bool { return os.Getenv(CIVar) != "" }

// Missing reports a missing prerequisite, described by format and args, which should say
// what is missing and how to provide it. It fails t under CI (see InCI) and skips t
// otherwise; either way t stops, so Missing does not return.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if v := os.Getenv(CIVar); v != "" {
		t.Fatalf("missing prerequisite (a failure, not a skip, because %s=%q): %s", CIVar, v, msg)
	}
	t.Skipf("missing prerequisite, skipping (under %s=true this fails): %s", CIVar, msg)
}

// TCP checks that something accepts TCP connections on addr, the address of the service
// called name, within DialTimeout; if not, it reports the service as Missing, with howTo
// saying how to start it.
func TCP(t testing.TB, name, addr, howTo string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, DialTimeout)
	if err != nil {
		Missing(t, "%s is not reachable on %s (%v); %s", name, addr, err, howTo)
		return
	}
	_ = c.Close()
}

// NATS checks that the NATS server (with JetStream) listens on NATSAddr and returns its URL.
func NATS(t testing.TB) string {
	t.Helper()
	TCP(t, "NATS", NATSAddr, "start nats-server with JetStream: "+StartNATS)
	return "nats://" + NATSAddr
}

// RabbitMQ checks that RabbitMQ listens on RabbitMQAddr and returns the AMQP URL of its guest
// user.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	TCP(t, "RabbitMQ", RabbitMQAddr, "start it with: "+StartRabbitMQ)
	return "amqp://guest:guest@" + RabbitMQAddr + "/"
}

// RabbitMQ10 is RabbitMQ that also checks that RabbitMQ speaks AMQP 1.0 (its
// rabbitmq_amqp1_0 plugin is enabled), by opening an AMQP 1.0 connection.
func RabbitMQ10(t testing.TB) string {
	t.Helper()
	url := RabbitMQ(t)
	if err := amqp10Handshake(RabbitMQAddr); err != nil {
		Missing(t, "RabbitMQ on %s does not speak AMQP 1.0 (%v); enable its plugin with: %s", RabbitMQAddr, err, EnableAMQP10)
	}
	return url
}

// amqp10Header opens an AMQP 1.0 connection with SASL, the way AMQP 1.0 clients connect to
// RabbitMQ; a server speaking AMQP 1.0 answers with the same header.
const amqp10Header = "AMQP\x03\x01\x00\x00"

// amqp10Handshake sends the AMQP 1.0 SASL protocol header to addr and returns nil if the
// server answers with it. A RabbitMQ without the plugin answers with its AMQP 0-9-1 header.
func amqp10Handshake(addr string) error {
	c, err := net.DialTimeout("tcp", addr, DialTimeout)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(DialTimeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := io.WriteString(c, amqp10Header); err != nil {
		return fmt.Errorf("send the AMQP 1.0 header: %w", err)
	}
	got := make([]byte, len(amqp10Header))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the answer to the AMQP 1.0 header: %w", err)
	}
	if string(got) != amqp10Header {
		return fmt.Errorf("it answered the AMQP 1.0 header with %q", got)
	}
	return nil
}

// Mosquitto checks that the MQTT broker listens on MosquittoAddr and returns its URL.
func Mosquitto(t testing.TB) string {
	t.Helper()
	TCP(t, "Mosquitto", MosquittoAddr, "start it with: "+StartMosquitto)
	return "tcp://" + MosquittoAddr
}

// PostgreSQL checks that PostgreSQL listens on PostgreSQLAddr and returns the DSN of its
// database test, which trusts local connections.
func PostgreSQL(t testing.TB) string {
	t.Helper()
	TCP(t, "PostgreSQL", PostgreSQLAddr, "start it with: "+StartPostgreSQL+" (and create the database: createdb -h 127.0.0.1 -U postgres test)")
	return "postgres://postgres@" + PostgreSQLAddr + "/test?sslmode=disable"
}

// PostgreSQLSchema returns the DSN of the test database (see PostgreSQL) and the name of a
// schema for tb alone: prefix, an underscore and random lower-case letters and digits. The
// schema, and everything in it, is dropped when tb ends, so tests of several packages can
// share the database at once.
func PostgreSQLSchema(tb testing.TB, prefix string) (dsn, schema string) {
	tb.Helper()
	dsn = PostgreSQL(tb)
	schema = prefix + "_" + strings.ToLower(rand.Text()[:16])
	DropPostgreSQLSchema(tb, dsn, schema)
	return dsn, schema
}

// DropPostgreSQLSchema drops schema, and everything in it, from the database at dsn when tb
// ends.
func DropPostgreSQLSchema(tb testing.TB, dsn, schema string) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
}

// Command returns the path of the program name, looked up in PATH (or name itself if it
// holds a slash); if it is not there, it reports the program as Missing, with how to install
// it.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "program %s is not installed (%v); %s", name, err, installHint(name))
	}
	return path
}

// installHint says how to install the program name on a Debian machine.
func installHint(name string) string {
	switch name {
	case "nats-server":
		return "install it with: apt-get install nats-server"
	case "mosquitto", "mosquitto_passwd":
		return "install it with: apt-get install mosquitto"
	case "node", "npm":
		return "install Node.js 20 with npm (apt-get install nodejs npm, or from nodejs.org)"
	case "chromium":
		return "install it with: apt-get install chromium"
	}
	return "install it and put it on PATH"
}
