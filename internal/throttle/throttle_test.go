package throttle

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// step is one request of a scenario: its class and twin, the time since the previous step,
// and what must become of it: "" admitted, else the limit that refuses it.
type step struct {
	after time.Duration
	class Class
	twin  string
	want  string
	// retry, when not zero, is the Retry-After the refusal must give.
	retry time.Duration
	// finish finishes the in-flight request of that number (counting admitted requests from
	// 1) before this step.
	finish int
}

func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"off by default", Config{}, []step{
			{class: Write, twin: "a"}, {class: Write, twin: "a"}, {class: Read, twin: "a"},
			{class: Query}, {class: Query}, {class: Telemetry, twin: "a"}, {class: Unlimited},
		}},
		{"instance writes", Config{WritesPerSecond: 2}, []step{
			{class: Write, twin: "a"}, {class: Write, twin: "b"},
			{class: Write, twin: "c", want: "writesPerSecond", retry: 500 * time.Millisecond},
			{class: Read, twin: "c"}, {class: Query}, {class: Telemetry, twin: "c"},
			{after: 500 * time.Millisecond, class: Write, twin: "c"},
			{class: Write, twin: "d", want: "writesPerSecond", retry: 500 * time.Millisecond},
		}},
		{"per twin writes", Config{TwinWritesPerSecond: 1}, []step{
			{class: Write, twin: "a"},
			{class: Write, twin: "a", want: "twinWritesPerSecond", retry: time.Second},
			{class: Write, twin: "b"},
			{class: Read, twin: "a"}, {class: Telemetry, twin: "a"},
			{after: 999 * time.Millisecond, class: Write, twin: "a", want: "twinWritesPerSecond", retry: time.Millisecond},
			{after: time.Millisecond, class: Write, twin: "a"},
		}},
		{"a twin refused gives the instance its token back", Config{WritesPerSecond: 2, TwinWritesPerSecond: 1}, []step{
			{class: Write, twin: "a"},
			{class: Write, twin: "a", want: "twinWritesPerSecond"},
			{class: Write, twin: "a", want: "twinWritesPerSecond"},
			{class: Write, twin: "b"},
			{class: Write, twin: "c", want: "writesPerSecond"},
		}},
		{"fractional rates", Config{QueriesPerSecond: 0.5}, []step{
			{class: Query},
			{class: Query, want: "queriesPerSecond", retry: 2 * time.Second},
			{after: 2 * time.Second, class: Query},
		}},
		{"reads", Config{ReadsPerSecond: 1}, []step{
			{class: Read, twin: "a"}, {class: Read, twin: "b", want: "readsPerSecond"}, {class: Write, twin: "a"},
		}},
		{"outstanding per twin", Config{MaxOutstandingPerTwin: 2}, []step{
			{class: Read, twin: "a"}, {class: Write, twin: "a"},
			{class: Telemetry, twin: "a", want: "maxOutstandingPerTwin", retry: time.Second},
			{class: Write, twin: "b"}, {class: Query},
			{finish: 1, class: Telemetry, twin: "a"},
			{class: Read, twin: "a", want: "maxOutstandingPerTwin"},
			{finish: 2, class: Read, twin: "a"},
		}},
		{"outstanding refusal takes no write token", Config{WritesPerSecond: 1, MaxOutstandingPerTwin: 1}, []step{
			{class: Read, twin: "a"},
			{class: Write, twin: "a", want: "maxOutstandingPerTwin"},
			{class: Write, twin: "b"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			tc.cfg.Now = func() time.Time { return now }
			th, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var admitted []func()
			for i, s := range tc.steps {
				now = now.Add(s.after)
				if s.finish > 0 {
					admitted[s.finish-1]()
				}
				done, refused := th.Admit(s.class, s.twin)
				got := ""
				if refused != nil {
					got = refused.Limit
					if done != nil {
						t.Errorf("step %d: refused with a done function", i)
					}
					if s.retry != 0 && refused.RetryAfter != s.retry {
						t.Errorf("step %d: retry after %v, want %v", i, refused.RetryAfter, s.retry)
					}
				} else {
					admitted = append(admitted, done)
				}
				if got != s.want {
					t.Fatalf("step %d (%+v): refused by %q, want %q", i, s, got, s.want)
				}
			}
		})
	}
}

// TestDoneTwice checks that finishing a request twice counts it out once.
func TestDoneTwice(t *testing.T) {
	th, err := New(Config{MaxOutstandingPerTwin: 1})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := th.Admit(Read, "a")
	done()
	done()
	d2, refused := th.Admit(Read, "a")
	if refused != nil {
		t.Fatalf("refused after done: %+v", refused)
	}
	if _, refused := th.Admit(Read, "a"); refused == nil {
		t.Error("a second request in flight was admitted: done counted out twice")
	}
	d2()
}

// TestEviction checks that the twins' map stays within MaxTwins, evicting the least recently
// used twin without requests in flight, and that an evicted twin starts afresh.
func TestEviction(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th, err := New(Config{TwinWritesPerSecond: 1, MaxOutstandingPerTwin: 10, MaxTwins: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	busy, _ := th.Admit(Write, "busy") // stays in flight
	for i := range 10 {
		done, refused := th.Admit(Write, fmt.Sprint("t", i))
		if refused != nil {
			t.Fatalf("t%d refused: %+v", i, refused)
		}
		done()
		if n := th.size(); n > 3 {
			t.Fatalf("after t%d the throttle keeps %d twins, want at most 3", i, n)
		}
	}
	if _, refused := th.Admit(Write, "busy"); refused == nil || refused.Limit != "twinWritesPerSecond" {
		t.Errorf("the twin in flight lost its bucket: %+v", refused)
	}
	// t9 was used last: still kept, its bucket empty.
	if _, refused := th.Admit(Write, "t9"); refused == nil {
		t.Error("t9 was evicted although used most recently")
	}
	// t0 was evicted: a full bucket again.
	if _, refused := th.Admit(Write, "t0"); refused != nil {
		t.Errorf("t0 = %+v, want it admitted afresh", refused)
	}
	busy()
	if _, err := New(Config{MaxTwins: -1}); err == nil {
		t.Error("New with negative MaxTwins succeeded")
	}
}

func TestValidate(t *testing.T) {
	err := Config{WritesPerSecond: -1, QueriesPerSecond: -2, MaxOutstandingPerTwin: -3}.Validate()
	for _, name := range []string{"writesPerSecond", "queriesPerSecond", "maxOutstandingPerTwin"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate = %v, want it to name %s", err, name)
		}
	}
	if err := (Config{WritesPerSecond: 1000, TwinWritesPerSecond: 10, MaxOutstandingPerTwin: 500}).Validate(); err != nil {
		t.Errorf("Validate of ADT's limits = %v", err)
	}
	if (Config{}).On() || !(Config{QueriesPerSecond: 1}).On() {
		t.Error("On does not tell whether a limit is set")
	}
}

// TestConcurrentAdmit checks, under the race detector, that concurrent requests on one twin
// never pass its bound of requests in flight.
func TestConcurrentAdmit(t *testing.T) {
	th, err := New(Config{MaxOutstandingPerTwin: 3})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		inFlight int
		peak     int
		wg       sync.WaitGroup
	)
	for range 50 {
		wg.Go(func() {
			for range 100 {
				done, refused := th.Admit(Write, "a")
				if refused != nil {
					continue
				}
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				mu.Unlock()
				mu.Lock()
				inFlight--
				mu.Unlock()
				done()
			}
		})
	}
	wg.Wait()
	if peak > 3 {
		t.Errorf("%d requests were in flight at once, want at most 3", peak)
	}
}
