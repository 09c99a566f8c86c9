package server

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchNATS is the machine's NATS JetStream server the latency benchmark delivers to.
const benchNATS = "nats://127.0.0.1:4222"

// benchPatchRate is the PATCH rate of BenchmarkEgressLatency, per second.
var benchPatchRate = flag.Int("egress-rate", 5000, "PATCH rate of BenchmarkEgressLatency, per second")

// BenchmarkEgressLatency measures the time from a PATCH being acknowledged to its event being
// accepted by the broker, with b.N patches sent at benchPatchRate per second over HTTP to an
// in-process server (durable SQLite store) that routes every twin update to a NATS JetStream
// endpoint. The event's arrival at a subscriber of its subject marks the broker's acceptance.
// It reports the rate reached and the p50, p99 and maximum latency; run it with, e.g.,
// -benchtime=50000x for ten seconds of load, and -egress-rate to change the rate.
func BenchmarkEgressLatency(b *testing.B) {
	nc, err := natsgo.Connect(benchNATS)
	if err != nil {
		b.Skipf("no NATS at %s: %v", benchNATS, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tag := fmt.Sprintf("benchlat%d", time.Now().UnixNano())
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: strings.ToUpper(tag), Subjects: []string{tag + ".>"}})
	if err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(ctx, strings.ToUpper(tag))

	received := make([]time.Time, b.N)
	var recvMu sync.Mutex
	sub, err := nc.Subscribe(tag+".>", func(m *natsgo.Msg) {
		at := time.Now()
		var data struct {
			Patch []struct {
				Value int `json:"value"`
			} `json:"patch"`
		}
		if json.Unmarshal(m.Data, &data) != nil || len(data.Patch) != 1 {
			return
		}
		if n := data.Patch[0].Value; n >= 0 && n < len(received) {
			recvMu.Lock()
			if received[n].IsZero() {
				received[n] = at
			}
			recvMu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	endpointDef, _ := json.Marshal(map[string]any{
		"endpointType": "nats", "url": benchNATS, "subject": tag + ".{twinId}", "stream": strings.ToUpper(tag),
	})
	cfg := Config{Listen: "127.0.0.1:0", DataDir: b.TempDir(), Egress: &EgressConfig{
		Endpoints: map[string]json.RawMessage{"nats": endpointDef},
		Routes:    map[string]RouteConfig{"updates": {EndpointName: "nats", Filter: "type = 'Microsoft.DigitalTwins.Twin.Update'"}},
	}}
	srv, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	const twins, workers = 1000, 256
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	send := func(method, path, body string, want int) error {
		req, err := http.NewRequest(method, srv.URL()+path+"?api-version=2023-10-31", bytes.NewBufferString(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
		}
		return nil
	}
	for deadline := time.Now().Add(30 * time.Second); !srv.ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the server did not become ready")
		}
	}
	err = send("POST", "/models", `[{"@id":"dtmi:bench:Meter;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
		"contents":[{"@type":"Property","name":"v","schema":"integer"}]}]`, http.StatusCreated)
	if err != nil {
		b.Fatal(err)
	}
	for i := range twins {
		if err := send("PUT", fmt.Sprintf("/digitaltwins/m%d", i), `{"$metadata":{"$model":"dtmi:bench:Meter;1"},"v":-1}`, http.StatusOK); err != nil {
			b.Fatal(err)
		}
	}

	acked := make([]time.Time, b.N)
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	var failures sync.Map
	for range workers {
		wg.Go(func() {
			for n := range jobs {
				body := fmt.Sprintf(`[{"op":"replace","path":"/v","value":%d}]`, n)
				if err := send("PATCH", fmt.Sprintf("/digitaltwins/m%d", n%twins), body, http.StatusNoContent); err != nil {
					failures.Store(n, err)
					continue
				}
				acked[n] = time.Now()
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	interval := time.Second / time.Duration(*benchPatchRate)
	for n := range b.N {
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	sent := time.Since(start)
	failures.Range(func(k, v any) bool {
		b.Fatalf("patch %v: %v", k, v)
		return false
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		recvMu.Lock()
		missing := slices.IndexFunc(received, time.Time.IsZero)
		recvMu.Unlock()
		if missing < 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("event of patch %d never reached the broker", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()

	lat := make([]time.Duration, b.N)
	recvMu.Lock()
	for n := range lat {
		lat[n] = max(0, received[n].Sub(acked[n]))
	}
	recvMu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/sent.Seconds(), "patches/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(0, "ns/op")
}
