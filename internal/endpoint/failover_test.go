package endpoint

import (
	"errors"
	"testing"

	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/sink"
)

// TestFailoverRounds walks a failover of two credentials through refusals and successes,
// as the outcomes of sends and of Acks (which may report for a sink already replaced).
func TestFailoverRounds(t *testing.T) {
	cfg := func(key string) webhook.SinkConfig {
		return webhook.SinkConfig{URL: "http://127.0.0.1:1/api/events", Mode: webhook.EventGrid, Headers: map[string]string{"aeg-sas-key": key}}
	}
	f, err := newFailover([]namedConfig[webhook.SinkConfig]{{"accessKey1", cfg("1")}, {"accessKey2", cfg("2")}}, webhook.NewSink, discard)
	if err != nil {
		t.Fatal(err)
	}
	refused := sink.Permanent(sink.Unauthorized(errors.New("webhook answered 401 Unauthorized")))
	other := sink.Permanent(errors.New("webhook answered 400 Bad Request"))

	// step sends with the current sink, which must use credential want, and records err.
	type result int
	const (
		ok result = iota
		retry
		permanent
	)
	step := func(name string, want int, err error, expect result) (uint64, int) {
		t.Helper()
		_, gen, berr := f.sink()
		if berr != nil {
			t.Fatal(berr)
		}
		if f.cur != want {
			t.Fatalf("%s: sending with credential %d, want %d", name, f.cur, want)
		}
		got := f.outcome(gen, f.cur, err)
		var r result
		switch {
		case got == nil:
			r = ok
		case sink.IsPermanent(got):
			r = permanent
		default:
			r = retry
		}
		if r != expect {
			t.Fatalf("%s: outcome %v (%d), want %d", name, got, r, expect)
		}
		return gen, f.cur
	}

	step("first send", 0, nil, ok)
	step("other failures pass through", 0, other, permanent)
	gen, cur := step("key 1 refused: retry with key 2", 0, refused, retry)
	// An Ack of the same sink refused too: counted once, sent again with key 2.
	if err := f.outcome(gen, cur, refused); err == nil || sink.IsPermanent(err) {
		t.Fatalf("second refusal of one sink = %v, want retryable", err)
	}
	step("key 2 accepted", 1, nil, ok)
	// A late Ack of the replaced sink of key 1 does not undo the switch.
	if err := f.outcome(gen, cur, refused); err == nil || sink.IsPermanent(err) {
		t.Fatalf("late refusal = %v, want retryable", err)
	}
	step("still key 2", 1, nil, ok)
	step("key 2 refused: retry with key 1", 1, refused, retry)
	step("key 1 refused too: every key refused, permanent", 0, refused, permanent)
	step("the next batch starts the round again with key 2", 1, refused, retry)
	step("key 1 accepted", 0, nil, ok)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFailoverOneCredential checks that one credential's refusal is returned as it is.
func TestFailoverOneCredential(t *testing.T) {
	f, err := newFailover([]namedConfig[webhook.SinkConfig]{{"accessKey1", webhook.SinkConfig{URL: "http://127.0.0.1:1/"}}}, webhook.NewSink, discard)
	if err != nil {
		t.Fatal(err)
	}
	refused := sink.Permanent(sink.Unauthorized(errors.New("webhook answered 401 Unauthorized")))
	_, gen, err := f.sink()
	if err != nil {
		t.Fatal(err)
	}
	if got := f.outcome(gen, 0, refused); got != refused {
		t.Errorf("outcome = %v, want the refusal itself", got)
	}
}
