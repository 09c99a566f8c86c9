package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// benchDevices is the number of devices (twins, and Orders) of the benchmarks, as in the
// issue's figure for MQTT: 1,000 devices.
const benchDevices = 1000

// benchWriters is the number of concurrent writers of the baseline, as many as the runner's
// default MaxConcurrency lets transactions be in flight.
const benchWriters = DefaultMaxConcurrency

// benchEnv is a durable store with benchDevices thermostats.
func benchEnv(b *testing.B) (*sqlite.Store, *twins.Service) {
	b.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir()}, discard)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	svc, err := twins.New(twins.Config{ServiceID: "tf.bench"}, st, discard)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.AddModels(ctx, []byte(thermostat)); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, benchDevices)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < benchDevices; i += 32 {
				_, err := svc.PutTwin(ctx, benchDevice(i), []byte(`{"$metadata":{"$model":"dtmi:test:Thermostat;1"},"temperature":20}`), "", twins.Trace{})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return st, svc
}

func benchDevice(i int) string { return "device-" + strconv.Itoa(i) }

// temperatureMapper is the hand-written mapping of the benchmark: the body
// {"device": id, "temperature": n} sets the device twin's temperature.
type temperatureMapper struct{}

func (temperatureMapper) Map(_ context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
	var r struct {
		Device      string          `json:"device"`
		Temperature json.RawMessage `json:"temperature"`
	}
	if err := json.Unmarshal(m.Body, &r); err != nil {
		return nil, err
	}
	patch := make([]byte, 0, 64)
	patch = append(patch, `[{"op":"add","path":"/temperature","value":`...)
	patch = append(patch, r.Temperature...)
	patch = append(patch, "}]"...)
	return []ingress.Change{{TwinID: r.Device, Patch: patch}}, nil
}

// BenchmarkIngest measures the runner against its ceiling, in one run on the same machine and
// store: the same patches of benchDevices twins, made by PatchTwin from benchWriters
// goroutines (the path of the API's PATCH, without HTTP) and applied by a runner from the
// messages of an in-memory source, one Order per device, each message with an id (so its
// de-duplication record is written too). An op is one patch committed.
func BenchmarkIngest(b *testing.B) {
	b.Run("PatchTwin", func(b *testing.B) {
		_, svc := benchEnv(b)
		var next atomic.Int64
		ctx := context.Background()
		b.ResetTimer()
		var wg sync.WaitGroup
		for range benchWriters {
			wg.Go(func() {
				for {
					n := int(next.Add(1)) - 1
					if n >= b.N {
						return
					}
					patch := fmt.Appendf(nil, `[{"op":"replace","path":"/temperature","value":%d.5}]`, n%40)
					if _, err := svc.PatchTwin(ctx, benchDevice(n%benchDevices), patch, "", twins.Trace{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
	b.Run("Runner", func(b *testing.B) {
		st, svc := benchEnv(b)
		r, err := New(Config{Source: "bench"}, st, svc, nil, discard)
		if err != nil {
			b.Fatal(err)
		}
		r.SetMappings([]Mapping{{Name: "temperature", Mapper: temperatureMapper{}}})
		src := &benchSource{n: b.N, done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.ResetTimer()
		ran := make(chan error, 1)
		go func() { ran <- r.Run(ctx, src) }()
		select {
		case <-src.done:
		case err := <-ran:
			b.Fatalf("Run: %v", err)
		}
		b.StopTimer()
		if st := r.Status(); st.Applied != uint64(b.N) {
			b.Fatalf("applied %d of %d messages: %+v", st.Applied, b.N, st)
		}
		cancel()
		<-ran
	})
}

// benchSource hands over n messages, round-robin over the devices, as fast as the runner takes
// them, and closes done once every one is settled.
type benchSource struct {
	n       int
	settled atomic.Int64
	done    chan struct{}
}

func (s *benchSource) Run(ctx context.Context, h ingress.Handler) error {
	h.State(ingress.Running, nil)
	settle := func(err error) {
		if err != nil {
			panic(err)
		}
		if s.settled.Add(1) == int64(s.n) {
			close(s.done)
		}
	}
	now := time.Now()
	for i := range s.n {
		d := benchDevice(i % benchDevices)
		m := ingress.Message{
			ID:    strconv.Itoa(i),
			Topic: "devices/" + d,
			Body:  fmt.Appendf(nil, `{"device":%q,"temperature":%d.5}`, d, i%40),
			Time:  now,
			Order: d,
		}
		if err := h.Handle(ctx, m, settle); err != nil {
			return nil
		}
	}
	<-ctx.Done()
	h.State(ingress.Stopped, nil)
	return nil
}
