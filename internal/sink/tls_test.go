package sink_test

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

func TestTLSConfigVerifiesWithCAFile(t *testing.T) {
	caFile, server := sinktest.ServerTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(cfg sink.TLS) error {
		tc, err := cfg.Config(nil)
		if err != nil {
			return err
		}
		c, err := tls.DialWithDialer(&net.Dialer{}, "tcp", ln.Addr().String(), tc)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(sink.TLS{CAFile: caFile}); err != nil {
		t.Errorf("dial with the CA file: %v", err)
	}
	if err := dial(sink.TLS{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("dial with the system roots = %v, want a certificate error", err)
	}
	if err := dial(sink.TLS{InsecureSkipVerify: true}); err != nil {
		t.Errorf("dial skipping verification: %v", err)
	}
	if err := dial(sink.TLS{CAFile: caFile, ServerName: "other.example"}); err == nil {
		t.Error("dial with a server name the certificate does not hold succeeded")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cfg  sink.TLS
		want string
	}{
		{sink.TLS{CAFile: filepath.Join(dir, "missing.pem")}, "read TLS CA file"},
		{sink.TLS{CAFile: notPEM}, "no PEM certificates"},
		{sink.TLS{CertFile: notPEM, KeyFile: notPEM}, "load TLS client certificate"},
	}
	for _, tt := range tests {
		if _, err := tt.cfg.Config(nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Config(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
	if err := (sink.TLS{CertFile: "c.pem"}).Validate("tls"); err == nil || !strings.Contains(err.Error(), "tls.certFile and tls.keyFile") {
		t.Errorf("Validate with a certificate and no key = %v", err)
	}
	if err := (sink.TLS{CertFile: "c.pem", KeyFile: "k.pem"}).Validate("tls"); err != nil {
		t.Errorf("Validate with both = %v", err)
	}
	if !(sink.TLS{}).IsZero() || (sink.TLS{Enabled: true}).IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestTLSConfigReadsOnlyAllowedFiles(t *testing.T) {
	caFile, _ := sinktest.ServerTLS(t)
	allowed := t.TempDir()
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{allowed}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sink.TLS{CAFile: caFile, CertFile: filepath.Join(allowed, "c.pem"), KeyFile: "/etc/shadow"}
	_, err = cfg.Config(p)
	if !errors.Is(err, netpolicy.ErrDenied) || !strings.Contains(err.Error(), "tls.caFile") {
		t.Fatalf("Config = %v, want the CA file outside the directories refused", err)
	}
	files := cfg.Files("tls")
	if len(files) != 3 || files[0].Field != "tls.caFile" || files[2].Field != "tls.keyFile" || files[2].Value != "/etc/shadow" {
		t.Errorf("Files = %+v", files)
	}
	if _, err := (sink.TLS{CAFile: caFile}).Config(nil); err != nil {
		t.Errorf("Config without a policy: %v", err)
	}
}
