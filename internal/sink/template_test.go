package sink

import (
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
)

func TestTemplateExpand(t *testing.T) {
	update := &event.Event{ID: "e1", Source: "tf.local", Type: event.TwinUpdate, Subject: "room1"}
	rel := &event.Event{ID: "e2", Source: "tf.local", Type: event.RelationshipCreate, Subject: "floor1/relationships/r9"}
	telemetry := &event.Event{ID: "m1", Source: "tf.local/digitaltwins/therm7", Type: event.Telemetry, Subject: "comp1"}
	dots := func(s string) string { return strings.ReplaceAll(s, ".", "_") }
	tests := []struct {
		name, text string
		e          *event.Event
		escape     func(string) string
		want       string
	}{
		{"literal", "twins", update, nil, "twins"},
		{"empty", "", update, nil, ""},
		{"type and twin", "twins.{type}.{twinId}", update, nil, "twins.Microsoft.DigitalTwins.Twin.Update.room1"},
		{"relationship twin", "t/{twinId}", rel, nil, "t/floor1"},
		{"relationship subject", "{subject}", rel, nil, "floor1/relationships/r9"},
		{"telemetry twin from source", "tel/{twinId}/{subject}", telemetry, nil, "tel/therm7/comp1"},
		{"source and id", "{source}#{id}", update, nil, "tf.local#e1"},
		{"escape values only", "a.{type}.{twinId}", update, dots, "a.Microsoft_DigitalTwins_Twin_Update.room1"},
		{"adjacent placeholders", "{id}{id}", update, nil, "e1e1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.text)
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tt.text, err)
			}
			if got := tmpl.Expand(tt.e, tt.escape); got != tt.want {
				t.Errorf("Expand = %q, want %q", got, tt.want)
			}
			if tmpl.String() != tt.text {
				t.Errorf("String = %q, want %q", tmpl.String(), tt.text)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"twins.{model}", "unknown placeholder {model}"},
		{"twins.{type", "unclosed '{'"},
		{"twins.{ty{pe}", "unclosed '{'"},
		{"twins.type}", "unmatched '}'"},
		{"{}", "unknown placeholder {}"},
	}
	for _, tt := range tests {
		_, err := ParseTemplate(tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseTemplate(%q) = %v, want error containing %q", tt.text, err, tt.want)
		}
	}
}

func TestTwinID(t *testing.T) {
	tests := []struct {
		e    event.Event
		want string
	}{
		{event.Event{Type: event.TwinCreate, Subject: "room1"}, "room1"},
		{event.Event{Type: event.RelationshipDelete, Subject: "room1/relationships/r1"}, "room1"},
		{event.Event{Type: event.Telemetry, Source: "h/digitaltwins/t1", Subject: "c"}, "t1"},
		{event.Event{Type: event.Telemetry, Source: "h"}, ""},
	}
	for _, tt := range tests {
		if got := TwinID(&tt.e); got != tt.want {
			t.Errorf("TwinID(%+v) = %q, want %q", tt.e, got, tt.want)
		}
	}
}
