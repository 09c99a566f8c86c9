// Package process builds the twinflow binary and runs it as a child process, for tests that
// exercise the real program from the outside: through its flags, its HTTP port, its signals and
// its data directory.
package process

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles ./cmd/twinflow into a temporary directory of t and returns the binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "twinflow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/twinflow")
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/twinflow: %v\n%s", err, out)
	}
	return bin
}

// moduleRoot returns the directory holding go.mod, found from this source file's location.
func moduleRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the process package source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// listeningLine matches the log line a server writes once it is bound.
var listeningLine = regexp.MustCompile(`twinflow listening on (https?://[^\s"]+)`)

// Process is a running `twinflow` child process.
type Process struct {
	// URL is the base URL the server logged it listens on.
	URL string

	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited and its output is drained
	err    error         // Wait's result, valid after done
	mu     sync.Mutex
	output bytes.Buffer // everything the process wrote to stdout and stderr
}

// Start runs `bin serve args...`, waits until it logs the URL it listens on and then until its
// /readyz answers 200, failing t if either takes over a minute. The process is killed when t
// ends, if it still runs. Use "--listen 127.0.0.1:0" to get a free port.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	return StartEnv(t, bin, nil, args...)
}

// StartEnv is Start with env ("KEY=value") added to the test's environment.
func StartEnv(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	urls := make(chan string, 1)
	go p.scan(r, urls)
	go func() {
		p.err = p.cmd.Wait()
		w.Close()
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", bin, p.Output())
		}
	})

	select {
	case p.URL = <-urls:
		// The probe only asks a loopback child whether it is ready; the tests that speak
		// to it over TLS verify its certificate themselves.
		probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		defer probe.CloseIdleConnections()
		p.WaitReady(t, probe, time.Minute)
		return p
	case <-p.done:
		t.Fatalf("twinflow exited before listening: %v\n%s", p.err, p.Output())
	case <-time.After(time.Minute):
		t.Fatalf("twinflow did not log its address within a minute:\n%s", p.Output())
	}
	return nil
}

// scan copies the process output into p.output and sends the listening URL once.
func (p *Process) scan(r io.Reader, urls chan<- string) {
	defer close(p.done)
	sent := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.output.WriteString(line)
		p.output.WriteByte('\n')
		p.mu.Unlock()
		if m := listeningLine.FindStringSubmatch(line); m != nil && !sent {
			urls <- m[1]
			sent = true
		}
	}
	// Drain on: a process that writes past the scanner's limit must not block on the pipe.
	_, _ = io.Copy(io.Discard, r)
}

// Output returns everything the process has written so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Done returns a channel closed once the process has exited (of itself or not) and its
// output is read; Stop then returns how it exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL and waits for the process to be gone. It is a no-op on an exited process.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, returning the exit error
// (nil for exit code 0). A process still running after timeout is killed and reported.
func (p *Process) Stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("still running %v after SIGTERM; killed", timeout)
	}
}

// WaitReady polls the process's /readyz with client until it answers 200, failing t after
// timeout.
func (p *Process) WaitReady(t testing.TB, client *http.Client, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(p.URL + "/readyz")
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			if code == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready after %v: status %d, error %v", p.URL, timeout, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SelfSignedCert writes a self-signed certificate for 127.0.0.1, ::1 and localhost and its key
// as PEM files into dir, and returns their paths. The certificate is its own CA, so a client
// can trust it directly (for Node: NODE_EXTRA_CA_CERTS=certFile).
func SelfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "twinflow test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
