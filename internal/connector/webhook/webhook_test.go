package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// receiver is an HTTP server that decodes every request it gets back into events.
type receiver struct {
	srv    *httptest.Server
	events chan event.Event
	reqs   chan *http.Request
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{events: make(chan event.Event, 10000), reqs: make(chan *http.Request, 10000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if status != http.StatusOK {
			http.Error(w, "refused", status)
			return
		}
		events, err := decode(req, body)
		if err != nil {
			t.Errorf("decode request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		r.reqs <- req
		for _, e := range events {
			r.events <- e
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// decode reads a request in any of the four modes back into events.
func decode(req *http.Request, body []byte) ([]event.Event, error) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	switch {
	case mt == "application/cloudevents+json":
		var e event.Event
		err := json.Unmarshal(body, &e)
		return []event.Event{e}, err
	case mt == "application/cloudevents-batch+json":
		var es []event.Event
		err := json.Unmarshal(body, &es)
		return es, err
	case req.Header.Get("ce-id") != "":
		e, err := cloudevents.FromAttributes(func(name string) string {
			v, err := url.PathUnescape(req.Header.Get("ce-" + name))
			if err != nil {
				return "!" + err.Error()
			}
			return v
		}, req.Header.Get("Content-Type"), body)
		return []event.Event{e}, err
	default:
		var grid []gridEvent
		if err := json.Unmarshal(body, &grid); err != nil {
			return nil, err
		}
		es := make([]event.Event, len(grid))
		for i, g := range grid {
			if g.DataVersion != "1.0" || g.MetadataVersion != "1" {
				return nil, errors.New("bad Event Grid versions")
			}
			tm := g.EventTime
			if tm == zeroTime {
				tm = ""
			}
			es[i] = event.Event{ID: g.ID, Source: g.Topic, SpecVersion: event.SpecVersion, Type: g.EventType,
				Subject: g.Subject, Time: tm, DataContentType: g.Data.ContentType, DataSchema: g.Data.DataSchema,
				TraceParent: g.Data.TraceParent, TraceState: g.Data.TraceState,
				TelemetrySourceTime: g.Data.TelemetrySourceTime, Data: g.Data.Data}
		}
		return es, nil
	}
}

func (r *receiver) Receive(ctx context.Context, n int) ([]event.Event, error) {
	out := make([]event.Event, 0, n)
	for len(out) < n {
		select {
		case e := <-r.events:
			out = append(out, e)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

func newSink(t testing.TB, cfg SinkConfig) *Sink {
	s, err := NewSink(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	for _, mode := range []string{Structured, Binary, Batched, EventGrid} {
		t.Run(mode, func(t *testing.T) {
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
					r := newReceiver(t, http.StatusOK)
					return newSink(t, SinkConfig{URL: r.srv.URL + "/hook", Mode: mode}), r
				},
				Proxied: func(t *testing.T, proxy func(string) string) (sink.Sink, sinktest.Receiver) {
					r := newReceiver(t, http.StatusOK)
					return newSink(t, SinkConfig{URL: "http://" + proxy(r.srv.Listener.Addr().String()) + "/hook", Mode: mode}), r
				},
				Reject: func(t *testing.T) sink.Sink {
					r := newReceiver(t, http.StatusBadRequest)
					return newSink(t, SinkConfig{URL: r.srv.URL, Mode: mode})
				},
			})
		})
	}
}

func TestSignatureAndHeaders(t *testing.T) {
	r := newReceiver(t, http.StatusOK)
	s := newSink(t, SinkConfig{URL: r.srv.URL, Secret: "s3cret", Headers: map[string]string{"Authorization": "Bearer tok", "X-Tenant": "a"}})
	s.now = func() time.Time { return time.Unix(1764000000, 0) }
	if err := s.Send(t.Context(), sinktest.Events("sig", 1)); err != nil {
		t.Fatal(err)
	}
	req := <-r.reqs
	body, _ := io.ReadAll(req.Body)
	if got := req.Header.Get(TimestampHeader); got != "1764000000" {
		t.Errorf("%s = %q, want 1764000000", TimestampHeader, got)
	}
	want := Sign("s3cret", "1764000000", body)
	if got := req.Header.Get(SignatureHeader); got != want || !strings.HasPrefix(got, "sha256=") || len(got) != len("sha256=")+64 {
		t.Errorf("%s = %q, want %q", SignatureHeader, got, want)
	}
	if Sign("other", "1764000000", body) == want || Sign("s3cret", "1764000001", body) == want {
		t.Error("signature does not depend on the secret and the timestamp")
	}
	if req.Header.Get("Authorization") != "Bearer tok" || req.Header.Get("X-Tenant") != "a" {
		t.Errorf("custom headers missing: %v", req.Header)
	}
}

func TestSignKnownValue(t *testing.T) {
	// echo -n '1.{}' | openssl dgst -sha256 -hmac key
	const want = "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
	if got := Sign("key", "1", []byte("{}")); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		want       string // "ok", "permanent", "unauthorized" (permanent too), "retry", or "after:<duration>"
	}{
		{200, "", "ok"}, {202, "", "ok"}, {204, "", "ok"},
		{400, "", "permanent"}, {401, "", "unauthorized"}, {403, "", "permanent"}, {404, "", "permanent"},
		{413, "", "permanent"}, {410, "", "permanent"},
		{408, "", "retry"}, {429, "", "retry"}, {500, "", "retry"}, {502, "", "retry"}, {503, "", "retry"},
		{301, "", "permanent"}, {302, "", "permanent"}, {307, "", "permanent"},
		{429, "7", "after:7s"}, {503, "120", "after:2m0s"},
		{503, "Wed, 25 Nov 2026 10:00:30 GMT", "after:30s"},
		{429, "soon", "retry"},
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status)+tt.retryAfter, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Status: strconv.Itoa(tt.status), Header: http.Header{}}
			if tt.retryAfter != "" {
				resp.Header.Set("Retry-After", tt.retryAfter)
			}
			err := statusError(resp, now)
			var ra *sink.RetryAfterError
			var got string
			switch {
			case err == nil:
				got = "ok"
			case sink.IsPermanent(err) && errors.Is(err, sink.ErrUnauthorized):
				got = "unauthorized"
			case errors.Is(err, sink.ErrUnauthorized):
				got = "unauthorized but retryable"
			case sink.IsPermanent(err):
				got = "permanent"
			case errors.As(err, &ra):
				got = "after:" + ra.After.String()
			default:
				got = "retry"
			}
			if got != tt.want {
				t.Errorf("status %d Retry-After %q: %s (%v), want %s", tt.status, tt.retryAfter, got, err, tt.want)
			}
		})
	}
}

func TestSendStatusOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	err := newSink(t, SinkConfig{URL: srv.URL}).Send(t.Context(), sinktest.Events("ra", 2))
	var ra *sink.RetryAfterError
	if !errors.As(err, &ra) || ra.After != 3*time.Second {
		t.Fatalf("Send = %v, want a RetryAfterError of 3s", err)
	}
}

func TestSendUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	err := newSink(t, SinkConfig{URL: addr}).Send(t.Context(), sinktest.Events("down", 1))
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Send to a closed port = %v, want a retryable error", err)
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name      string
		allowed   string
		status    int
		permanent bool
		ok        bool
	}{
		{"echoes origin", "twinflow", 200, false, true},
		{"wildcard", "*", 200, false, true},
		{"no header", "", 200, true, false},
		{"other origin", "someone-else", 200, true, false},
		{"method not allowed", "twinflow", 405, true, false},
		{"server error", "twinflow", 503, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var origin, auth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodOptions {
					t.Errorf("method %s, want OPTIONS", r.Method)
				}
				origin, auth = r.Header.Get("WebHook-Request-Origin"), r.Header.Get("Authorization")
				if tt.allowed != "" {
					w.Header().Set("WebHook-Allowed-Origin", tt.allowed)
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			err := Handshake(t.Context(), SinkConfig{URL: srv.URL, Headers: map[string]string{"Authorization": "k"}})
			if (err == nil) != tt.ok || (err != nil && sink.IsPermanent(err) != tt.permanent) {
				t.Fatalf("Handshake = %v, want ok=%v permanent=%v", err, tt.ok, tt.permanent)
			}
			if origin != "twinflow" || auth != "k" {
				t.Errorf("request origin %q, authorization %q", origin, auth)
			}
		})
	}
}

// TestEventGridSchema checks the exact Event Grid form ADT sends: payload under data.data,
// the zero time for telemetry, and the configured topic, or none when publishing to a topic.
func TestEventGridSchema(t *testing.T) {
	events := sinktest.Events("eg", 3)[1:3] // a relationship event and a telemetry event
	got, err := eventGridBatch(events, "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/t", false)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"id":"eg-1","subject":"twin-1/relationships/rel-1","data":{"data":{"$relationshipId":"rel-1","$sourceId":"twin-1","$targetId":"t2","$relationshipName":"contains","note":"ünïcode \"quoted\""},"contenttype":"application/json"},"eventType":"Microsoft.DigitalTwins.Relationship.Create","dataVersion":"1.0","metadataVersion":"1","eventTime":"2026-11-25T10:00:01.0000000Z","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/t"},` +
		`{"id":"eg-2","subject":"thermostat","data":{"data":{"temperature":21.5,"seq":2},"contenttype":"application/json","traceparent":"00-00000000000000000000000000000003-0000000000000003-01","tracestate":"congo=t61rcWkgMzE,rojo=0000000000000003","telemetrySourceTime":"2026-11-25T09:59:02.123456789+01:00","dataschema":"dtmi:example:Thermostat;1"},"eventType":"microsoft.iot.telemetry","dataVersion":"1.0","metadataVersion":"1","eventTime":"0001-01-01T00:00:00Z","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/t"}]`
	if string(got) != want {
		t.Errorf("Event Grid batch =\n%s\nwant\n%s", got, want)
	}
	got, err = eventGridBatch(events[:1], "", true)
	if err != nil {
		t.Fatal(err)
	}
	want = `[{"id":"eg-1","subject":"twin-1/relationships/rel-1","data":{"data":{"$relationshipId":"rel-1","$sourceId":"twin-1","$targetId":"t2","$relationshipName":"contains","note":"ünïcode \"quoted\""},"contenttype":"application/json"},"eventType":"Microsoft.DigitalTwins.Relationship.Create","dataVersion":"1.0","metadataVersion":"1","eventTime":"2026-11-25T10:00:01.0000000Z"}]`
	if string(got) != want {
		t.Errorf("Event Grid batch without topic =\n%s\nwant\n%s", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  SinkConfig
		want []string
	}{
		{SinkConfig{URL: "http://h/x"}, nil},
		{SinkConfig{URL: "https://h", Mode: "batched", Timeout: sink.Duration(time.Second)}, nil},
		{SinkConfig{}, []string{"url: required"}},
		{SinkConfig{URL: "ftp://h", Mode: "soap", Timeout: -1, Headers: map[string]string{"Bad Name": "v"},
			TLS: sink.TLS{CertFile: "c.pem"}},
			[]string{"url:", "mode:", "timeout:", "headers:", "tls.certFile"}},
		{SinkConfig{URL: "/relative"}, []string{"url:"}},
		{SinkConfig{URL: "http://h", Topic: "t"}, []string{"topic: only for mode eventgrid"}},
		{SinkConfig{URL: "http://h", Mode: EventGrid, Topic: "t"}, nil},
		{SinkConfig{URL: "http://h", Mode: EventGrid, OmitTopic: true}, nil},
		{SinkConfig{URL: "http://h", OmitTopic: true}, []string{"omitTopic: only for mode eventgrid"}},
		{SinkConfig{URL: "http://h", Mode: EventGrid, Topic: "t", OmitTopic: true}, []string{"omitTopic: not with a topic"}},
		{SinkConfig{URL: "http://h", Headers: map[string]string{"X-Key": "v"}, SecretHeaders: []string{"x-key"}}, nil},
		{SinkConfig{URL: "http://h", Headers: map[string]string{"X-Key": "v"}, SecretHeaders: []string{"X-Other"}},
			[]string{`secretHeaders[0]: "X-Other" is not one of headers`}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if len(tt.want) == 0 {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want %v", tt.cfg, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want it to mention %q", tt.cfg, err, w)
			}
		}
	}
}

func TestConfigJSON(t *testing.T) {
	var c SinkConfig
	if err := json.Unmarshal([]byte(`{"url":"http://h","mode":"binary","timeout":"2.5s","headers":{"A":"b"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Timeout) != 2500*time.Millisecond || c.Mode != Binary || c.Headers["A"] != "b" {
		t.Fatalf("decoded %+v", c)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"url":"http://h","mode":"binary","headers":{"A":"b"},"timeout":"2.5s"}`; string(b) != want {
		t.Errorf("encoded %s, want %s", b, want)
	}
	if err := json.Unmarshal([]byte(`{"timeout":10}`), &c); err == nil {
		t.Error("a numeric timeout decoded without error")
	}
}

func TestRedacted(t *testing.T) {
	c := SinkConfig{URL: "https://user:pw@h/p?code=key", Secret: "s",
		Headers:       map[string]string{"Authorization": "a", "X-Trace": "t", "X-Signature-Key": "sk"},
		SecretHeaders: []string{"x-signature-key"}}
	r := c.Redacted()
	if r.Secret != "***" || r.URL != "https://user:xxxxx@h/p?xxxxx" || r.Headers["Authorization"] != "***" ||
		r.Headers["X-Signature-Key"] != "***" || r.Headers["X-Trace"] != "t" {
		t.Errorf("Redacted = %+v", r)
	}
	if c.Headers["Authorization"] != "a" {
		t.Error("Redacted changed the original headers")
	}
}

func TestTLS(t *testing.T) {
	caFile, server := sinktest.ServerTLS(t)
	r := newReceiver(t, http.StatusOK)
	r.srv.Close()
	r.srv = httptest.NewUnstartedServer(r.srv.Config.Handler)
	r.srv.TLS = server
	r.srv.StartTLS()
	defer r.srv.Close()
	events := sinktest.Events("tls", 2)
	if err := newSink(t, SinkConfig{URL: r.srv.URL, TLS: sink.TLS{CAFile: caFile}}).Send(t.Context(), events); err != nil {
		t.Fatalf("Send over TLS with the CA file: %v", err)
	}
	got, err := r.Receive(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if got[1].ID != events[1].ID {
		t.Errorf("received %s, want %s", got[1].ID, events[1].ID)
	}
	if err := newSink(t, SinkConfig{URL: r.srv.URL}).Send(t.Context(), events); err == nil {
		t.Error("Send to a server whose certificate the system roots do not know succeeded")
	}
}

// counter is an HTTP server that counts the requests it gets and answers them with answer.
type counter struct {
	srv  *httptest.Server
	hits atomic.Int32
}

func newCounter(t *testing.T, answer http.HandlerFunc) *counter {
	c := &counter{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		answer(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	target := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WebHook-Allowed-Origin", "*")
	})
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirector := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.srv.URL+"/elsewhere", code)
		})
		err := newSink(t, SinkConfig{URL: redirector.srv.URL}).Send(t.Context(), sinktest.Events("redirect", 1))
		if !sink.IsPermanent(err) || !strings.Contains(err.Error(), "redirects are not followed") || !redact.IsShown(err) {
			t.Errorf("Send answered %d = %v, want a permanent failure", code, err)
		}
		if err := Handshake(t.Context(), SinkConfig{URL: redirector.srv.URL}); !sink.IsPermanent(err) {
			t.Errorf("Handshake answered %d = %v, want a permanent refusal", code, err)
		}
		if redirector.hits.Load() != 2 {
			t.Errorf("the redirecting server got %d requests, want 2", redirector.hits.Load())
		}
	}
	if n := target.hits.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

func TestErrorsHideTheAnswerAndURLSecrets(t *testing.T) {
	srv := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("internal detail: db password is hunter2"))
	})
	u := strings.Replace(srv.srv.URL, "http://", "http://user:url-secret-1@", 1) + "/hook?sig=query-secret-1"
	err := newSink(t, SinkConfig{URL: u}).Send(t.Context(), sinktest.Events("body", 1))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "400 Bad Request") {
		t.Errorf("Send = %v, want the status without the body", err)
	}
	srv.srv.Close()
	err = newSink(t, SinkConfig{URL: u}).Send(t.Context(), sinktest.Events("down", 1))
	if err == nil || strings.Contains(err.Error(), "url-secret-1") || strings.Contains(err.Error(), "query-secret-1") {
		t.Errorf("Send to a closed port = %v, want the URL's secrets blanked", err)
	}
	if redact.IsShown(err) {
		t.Errorf("a failed connection is Shown: %v", err)
	}
	err = Handshake(t.Context(), SinkConfig{URL: u})
	if err == nil || strings.Contains(err.Error(), "url-secret-1") || strings.Contains(err.Error(), "query-secret-1") {
		t.Errorf("Handshake with a closed port = %v, want the URL's secrets blanked", err)
	}
}

func TestPolicyChecksEveryConnection(t *testing.T) {
	srv := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WebHook-Allowed-Origin", "*")
	})
	p, err := netpolicy.New(netpolicy.Config{DenyLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(srv.srv.Listener.Addr().String())
	for _, u := range []string{srv.srv.URL, "http://localhost:" + port + "/hook"} {
		cfg := SinkConfig{URL: u}.WithPolicy(p)
		if err := newSink(t, cfg).Send(t.Context(), sinktest.Events("denied", 1)); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("Send to %s = %v, want ErrDenied", u, err)
		}
		if err := Handshake(t.Context(), cfg); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("Handshake with %s = %v, want ErrDenied", u, err)
		}
	}
	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("the server got %d requests", n)
	}
	if err := newSink(t, SinkConfig{URL: srv.srv.URL}.WithPolicy(nil)).Send(t.Context(), sinktest.Events("allowed", 1)); err != nil {
		t.Fatalf("Send without a policy: %v", err)
	}
	client, err := newClient(SinkConfig{URL: srv.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if client.Transport.(*http.Transport).Proxy != nil {
		t.Error("the client uses a proxy of the environment")
	}
}

func TestTLSFilesOutsideTheAllowedDirectories(t *testing.T) {
	caFile, _ := sinktest.ServerTLS(t)
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := SinkConfig{URL: "https://h/x", TLS: sink.TLS{CAFile: caFile}}.WithPolicy(p)
	if _, err := NewSink(cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("NewSink = %v, want ErrDenied", err)
	}
	if err := Handshake(t.Context(), cfg); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("Handshake = %v, want ErrDenied", err)
	}
	r := cfg.Reach()
	if len(r.Addrs) != 1 || r.Addrs[0] != (netpolicy.Named{Field: "url", Value: "h:443"}) ||
		len(r.Files) != 1 || r.Files[0] != (netpolicy.Named{Field: "tls.caFile", Value: caFile}) {
		t.Errorf("Reach = %+v", r)
	}
}

// TestHopsHeader checks that every mode's requests carry the largest hop count of their
// events in Twinflow-Hops, and binary mode also as the ce-twinflowhops attribute.
func TestHopsHeader(t *testing.T) {
	for _, mode := range []string{Structured, Binary, Batched, EventGrid} {
		t.Run(mode, func(t *testing.T) {
			r := newReceiver(t, http.StatusOK)
			s := newSink(t, SinkConfig{URL: r.srv.URL, Mode: mode})
			events := sinktest.Events("hops", 2)
			events[0].Hops, events[1].Hops = 3, 5
			if err := s.Send(t.Context(), events); err != nil {
				t.Fatal(err)
			}
			want := []string{"3", "5"}
			if mode == Batched || mode == EventGrid {
				want = []string{"5"}
			}
			for _, w := range want {
				req := <-r.reqs
				if got := req.Header.Get(event.HopsHeader); got != w {
					t.Errorf("%s = %q, want %q", event.HopsHeader, got, w)
				}
				if got := req.Header.Get("ce-twinflowhops"); mode == Binary && got != w {
					t.Errorf("ce-twinflowhops = %q, want %q", got, w)
				}
			}
			if mode == Structured || mode == Batched {
				got, err := r.Receive(t.Context(), 2)
				if err != nil {
					t.Fatal(err)
				}
				if got[0].Hops != 3 || got[1].Hops != 5 {
					t.Errorf("the events decode with hops %d and %d, want 3 and 5", got[0].Hops, got[1].Hops)
				}
			}
		})
	}
	r := newReceiver(t, http.StatusOK)
	if err := newSink(t, SinkConfig{URL: r.srv.URL}).Send(t.Context(), sinktest.Events("none", 1)); err != nil {
		t.Fatal(err)
	}
	if req := <-r.reqs; req.Header.Get(event.HopsHeader) != "" {
		t.Errorf("an event that never came back has %s %q, want none", event.HopsHeader, req.Header.Get(event.HopsHeader))
	}
}
