package ingress

import (
	"fmt"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
)

func TestEventMessage(t *testing.T) {
	tests := []struct {
		name  string
		e     event.Event
		order string
	}{
		{"twin", event.Event{ID: "1", Source: "tf", Type: event.TwinUpdate, Subject: "t1", Time: "2024-05-01T10:00:00.1234567Z", Data: []byte(`{"modelId":"m"}`)}, "t1"},
		{"relationship", event.Event{ID: "2", Source: "tf", Type: event.RelationshipCreate, Subject: event.RelationshipSubject("t1", "r1")}, "t1"},
		{"telemetry", event.Event{ID: "3", Source: "tf/digitaltwins/t2", Type: event.Telemetry, Subject: "therm"}, "t2"},
	}
	for _, tt := range tests {
		m := EventMessage(tt.e)
		want := map[string]string{"type": tt.e.Type, "subject": tt.e.Subject, "id": tt.e.ID, "source": tt.e.Source, "time": tt.e.Time}
		if m.ID != tt.e.ID || m.Topic != EventsSource || m.Order != tt.order || string(m.Body) != string(tt.e.Data) || fmt.Sprint(m.Headers) != fmt.Sprint(want) {
			t.Errorf("%s: EventMessage = %+v", tt.name, m)
		}
	}
	m := EventMessage(event.Event{Time: "2024-05-01T10:00:00.1234567Z"})
	if want := time.Date(2024, 5, 1, 10, 0, 0, 123456700, time.UTC); !m.Time.Equal(want) {
		t.Errorf("Time = %v, want %v", m.Time, want)
	}
}
