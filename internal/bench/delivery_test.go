package bench

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

func TestDeliveryConfigDefaults(t *testing.T) {
	got := DeliveryConfig{}.withDefaults()
	want := DeliveryConfig{
		Dir: os.TempDir(), Twins: 10_000, Rate: DefaultDeliveryRate, Duration: DefaultDeliveryDuration,
		Conns: DefaultDeliveryConns, NATS: DefaultDeliveryNATS,
	}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	set := DeliveryConfig{Dir: "d", Twins: 5, Rate: 7, Duration: time.Second, Conns: 3, NATS: "nats://h:1"}
	if got := set.withDefaults(); got != set {
		t.Errorf("withDefaults changed set fields: %+v, want %+v", got, set)
	}
}

func TestDeliverySchedule(t *testing.T) {
	for _, tt := range []struct {
		rate     int
		duration time.Duration
		patches  int
		due      [2]time.Duration // of patches 1 and patches-1
	}{
		{5000, 20 * time.Second, 100_000, [2]time.Duration{200 * time.Microsecond, 20*time.Second - 200*time.Microsecond}},
		{3, time.Second, 3, [2]time.Duration{333_333_333, 666_666_666}},
		{10, 10 * time.Millisecond, 1, [2]time.Duration{100 * time.Millisecond, 0}},
	} {
		cfg := DeliveryConfig{Rate: tt.rate, Duration: tt.duration}
		if got := cfg.patches(); got != tt.patches {
			t.Errorf("%d/s for %v: %d patches, want %d", tt.rate, tt.duration, got, tt.patches)
		}
		if got := cfg.due(0); got != 0 {
			t.Errorf("%d/s: patch 0 due at %v, want 0", tt.rate, got)
		}
		if got := [2]time.Duration{cfg.due(1), cfg.due(tt.patches - 1)}; got != tt.due {
			t.Errorf("%d/s: patches 1 and %d due at %v, want %v", tt.rate, tt.patches-1, got, tt.due)
		}
	}
}

func TestSummarize(t *testing.T) {
	if got := summarize(nil); got != (Latencies{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
	sorted := make([]time.Duration, 200)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Millisecond
	}
	want := Latencies{P50: 100 * time.Millisecond, P99: 198 * time.Millisecond, Max: 200 * time.Millisecond}
	if got := summarize(sorted); got != want {
		t.Errorf("summarize(1..200ms) = %+v, want %+v", got, want)
	}
}

// TestDeliveryBody checks that each patch is valid JSON Patch whose marker op names the patch,
// and that markerNumber finds the number in the event data the server makes of it.
func TestDeliveryBody(t *testing.T) {
	r := newDeliveryRun(DeliveryConfig{Rate: 10, Duration: time.Second}.withDefaults())
	for _, n := range []int{0, 7, 12_345, 99_999} {
		body := r.body(nil, n)
		var ops []struct {
			Op, Path string
			Value    any
		}
		if err := json.Unmarshal(body, &ops); err != nil {
			t.Fatalf("body(%d) = %s: %v", n, body, err)
		}
		if len(ops) < 1 || len(ops) > 3 || ops[0].Path != "/"+propName(markerProp) {
			t.Fatalf("body(%d) = %s: want the marker op first, then up to two others", n, body)
		}
		for _, op := range ops[1:] {
			if op.Path == ops[0].Path {
				t.Errorf("body(%d) = %s: replaces the marker twice", n, body)
			}
		}
		data, err := json.Marshal(map[string]any{"modelId": modelID, "patch": ops})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := markerNumber(data, markerQuoted); !ok || got != n {
			t.Errorf("markerNumber(%s) = %d, %v; want %d", data, got, ok, n)
		}
	}
	for _, data := range []string{`{}`, `{"patch":[{"value":"delivery-"}]}`, `{"patch":[{"value":"delivery-x1"}]}`, `"delivery-12`} {
		if n, ok := markerNumber([]byte(data), markerQuoted); ok {
			t.Errorf("markerNumber(%s) = %d, true; want false", data, n)
		}
	}
}

// TestDelivery runs the delivery benchmark at a tiny size against the machine's NATS server
// (a prerequisite, see testenv.NATS): every acknowledged patch's event must arrive.
func TestDelivery(t *testing.T) {
	natsURL := testenv.NATS(t)
	dir := t.TempDir()
	res, err := Delivery(t.Context(), DeliveryConfig{
		Dir: dir, Twins: 20, Rate: 200, Duration: 300 * time.Millisecond, Conns: 4, NATS: natsURL,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Delivery: %v", err)
	}
	if res.Sent != 60 || res.Patches != 60 || res.Failed != 0 || res.Delivered != 60 || res.Missing != 0 {
		t.Errorf("sent %d, acknowledged %d, failed %d, delivered %d, missing %d; want 60 sent, acknowledged and delivered",
			res.Sent, res.Patches, res.Failed, res.Delivered, res.Missing)
	}
	if res.Ack.P50 <= 0 || res.Ack.P50 > res.Ack.P99 || res.Ack.P99 > res.Ack.Max || res.Delivery.P50 > res.Delivery.P99 || res.Delivery.P99 > res.Delivery.Max {
		t.Errorf("latencies %+v and %+v are not ordered", res.Ack, res.Delivery)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"patches/s acknowledged", "ack to broker latency", "60 delivered, 0 missing", "CPU per patch"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}
