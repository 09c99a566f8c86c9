package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// TestEventSourceContract runs the Source contract suite against the change log: publishing
// is emitting events, each device's as the subject of its events.
func TestEventSourceContract(t *testing.T) {
	var mu sync.Mutex
	stores := map[*testing.T]*sqlite.Store{}
	storeOf := func(t *testing.T) *sqlite.Store {
		mu.Lock()
		defer mu.Unlock()
		if st, ok := stores[t]; ok {
			return st
		}
		st := openStore(t)
		stores[t] = st
		return st
	}
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			src, err := NewEventSource(EventSourceConfig{CursorInterval: time.Millisecond}, storeOf(t), discard)
			if err != nil {
				t.Fatal(err)
			}
			return src
		},
		Publish: func(t *testing.T, msgs []ingresstest.Outgoing) {
			err := storeOf(t).Update(context.Background(), func(w store.Writer) error {
				for _, m := range msgs {
					ev := event.Event{
						ID: m.ID, Source: "tf.test", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
						Subject: m.Device, Time: time.Now().UTC().Format(time.RFC3339Nano), Data: m.Body,
					}
					if err := w.Emit(ev); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		Durable: true,
		IDs:     true,
	})
}

func TestEventMessage(t *testing.T) {
	tests := []struct {
		e     event.Event
		order string
	}{
		{event.Event{Type: event.TwinUpdate, Subject: "t1"}, "t1"},
		{event.Event{Type: event.RelationshipCreate, Subject: "r1/relationships/c1"}, "r1"},
		{event.Event{Type: event.Telemetry, Source: "tf.test/digitaltwins/t2"}, "t2"},
	}
	for _, tt := range tests {
		src, _ := NewEventSource(EventSourceConfig{}, nil, discard)
		tt.e.ID, tt.e.Time, tt.e.Depth = "e1", "2026-01-02T03:04:05.0000000Z", 4
		tt.e.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		m := src.message(tt.e)
		if m.Order != tt.order || m.ID != "e1" || m.Topic != EventsSource || m.Headers["type"] != tt.e.Type ||
			m.Headers[DepthHeader] != "4" || m.Headers["traceparent"] != tt.e.TraceParent ||
			!m.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("message of %+v = %+v", tt.e, m)
		}
	}
}

// rooms is the model of the propagation tests: a room whose temperature follows its
// thermostat's.
const rooms = `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Room;1","@type":"Interface",
 "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true},
  {"@type":"Property","name":"seq","schema":"integer","writable":true}]}]`

// propagate is ADT's ProcessDTRoutedData as a Go mapping: an update of a thermostat's
// temperature sets its room's (room-<thermostat>), and an update of a room's temperature, when
// cycle is set, sets the thermostat's again.
func propagate(cycle bool) Mapping {
	return Mapping{Name: "propagate", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
		if m.Headers["type"] != event.TwinUpdate {
			return nil, nil
		}
		var data struct {
			Patch []struct {
				Path  string          `json:"path"`
				Value json.RawMessage `json:"value"`
			} `json:"patch"`
		}
		if err := json.Unmarshal(m.Body, &data); err != nil {
			return nil, err
		}
		subject := m.Headers["subject"]
		target := "room-" + subject
		if room, ok := strings.CutPrefix(subject, "room-"); ok {
			if !cycle {
				return nil, nil
			}
			target = room
		}
		for _, op := range data.Patch {
			if op.Path == "/temperature" {
				patch := fmt.Sprintf(`[{"op":"add","path":"/temperature","value":%s}]`, op.Value)
				return []ingress.Change{{TwinID: target, Patch: []byte(patch)}}, nil
			}
		}
		return nil, nil
	})}
}

// thermostatInRoom creates twins t1 and room-t1.
func (e *env) thermostatInRoom() {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.svc.AddModels(ctx, []byte(rooms)); err != nil {
		e.t.Fatal(err)
	}
	for id, model := range map[string]string{"t1": "dtmi:test:Thermostat;1", "room-t1": "dtmi:test:Room;1"} {
		if _, err := e.svc.PutTwin(ctx, id, []byte(`{"$metadata":{"$model":"`+model+`"}}`), "", twins.Trace{}); err != nil {
			e.t.Fatalf("PutTwin %s: %v", id, err)
		}
	}
}

// startPropagation runs the $events runner with mp over e's change log.
func (e *env) startPropagation(mp Mapping) *Runner {
	e.t.Helper()
	src, err := NewEventSource(EventSourceConfig{}, e.st, discard)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.start(Config{Source: EventsSource, Propagation: true}, src, mp)
}

func TestPropagation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.thermostatInRoom()
	r := e.startPropagation(propagate(false))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := e.svc.PatchTwin(ctx, "t1", []byte(`[{"op":"add","path":"/temperature","value":23.5}]`), "", twins.Trace{Parent: tp}); err != nil {
		t.Fatal(err)
	}
	// The log hands out a commit once it is durable, which a read of the twin may precede.
	var update event.Event
	waitFor(t, "the room's update is in the log", func() bool {
		for _, ev := range e.events() {
			if ev.Type == event.TwinUpdate && ev.Subject == "room-t1" {
				update = ev
				return true
			}
		}
		return false
	})
	if doc := e.twin("room-t1"); doc["temperature"] != 23.5 {
		t.Errorf("the room = %v; want its thermostat's temperature", doc)
	}
	if update.Depth != 1 || update.TraceParent != tp {
		t.Errorf("the room's update has depth %d and trace %q; want 1 and the thermostat's", update.Depth, update.TraceParent)
	}
	// The cursor is written in the background, at most an interval after the runner settled.
	waitFor(t, "the cursor is stored past every event", func() bool {
		var cursor uint64
		err := e.st.ViewDelivery(ctx, func(r store.DeliveryReader) error {
			var err error
			cursor, err = r.ConsumerCursor(EventsSource)
			return err
		})
		return err == nil && cursor == e.st.Log().Last() && r.Status().Unsettled == 0
	})
}

func TestPropagationCycleStops(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.thermostatInRoom()
	r := e.startPropagation(propagate(true))
	if _, err := e.svc.PatchTwin(ctx, "t1", []byte(`[{"op":"add","path":"/temperature","value":1}]`), "", twins.Trace{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cycle stops with a dead letter", func() bool { return r.Status().DeadLettered == 1 })
	waitFor(t, "every event is settled", func() bool { st := r.Status(); return st.Lag == 0 && st.Unsettled == 0 })
	updates := 0
	for _, ev := range e.events() {
		if ev.Type == event.TwinUpdate {
			updates++
		}
	}
	// The API's update, then one per propagation step up to the limit.
	if updates != 1+DefaultMaxDepth {
		t.Errorf("%d updates; want %d", updates, 1+DefaultMaxDepth)
	}
	dls := e.deadLetters(EventsSource)
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "cycle") || dls[0].Message.Headers[DepthHeader] != fmt.Sprint(DefaultMaxDepth) {
		t.Errorf("dead letters = %+v", dls)
	}
}
