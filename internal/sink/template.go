package sink

import (
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/event"
)

// Template names a destination (a NATS subject, a Kafka topic, an MQTT topic, an AMQP routing
// key) per event. Its text is literal except for these placeholders, replaced by the event's
// values:
//
//	{type}     the event type, e.g. Microsoft.DigitalTwins.Twin.Update
//	{twinId}   the id of the twin the event is about (see TwinID)
//	{subject}  the event subject
//	{source}   the event source
//	{id}       the event id
//
// A Template is immutable and safe for concurrent use. The zero Template expands to "".
type Template struct {
	text  string
	parts []part
}

// part is a literal (field == "") or a placeholder.
type part struct {
	literal string
	field   string
}

// placeholder returns the value of the placeholder named name in e, and whether such a
// placeholder exists.
func placeholder(name string, e *event.Event) (string, bool) {
	switch name {
	case "type":
		return e.Type, true
	case "twinId":
		return TwinID(e), true
	case "subject":
		return e.Subject, true
	case "source":
		return e.Source, true
	case "id":
		return e.ID, true
	}
	return "", false
}

// ParseTemplate compiles text. It fails on an unknown placeholder and on a brace that opens
// or closes nothing.
func ParseTemplate(text string) (Template, error) {
	t := Template{text: text}
	rest := text
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, part{literal: rest})
			break
		}
		if rest[open] == '}' {
			return Template{}, fmt.Errorf("template %q: unmatched '}'", text)
		}
		if open > 0 {
			t.parts = append(t.parts, part{literal: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return Template{}, fmt.Errorf("template %q: unclosed '{'", text)
		}
		name := rest[open+1 : open+1+end]
		if _, ok := placeholder(name, &event.Event{}); !ok {
			return Template{}, fmt.Errorf("template %q: unknown placeholder {%s}; known: {type}, {twinId}, {subject}, {source}, {id}", text, name)
		}
		t.parts = append(t.parts, part{field: name})
		rest = rest[open+1+end+1:]
	}
	return t, nil
}

// String returns the template's text.
func (t Template) String() string { return t.text }

// Expand returns t with its placeholders replaced by e's values. If escape is not nil, each
// value (never the literal text) goes through it first, so that a connector can keep values
// from adding separators its destination names give meaning to (NATS '.', MQTT '/').
func (t Template) Expand(e *event.Event, escape func(string) string) string {
	if len(t.parts) == 1 && t.parts[0].field == "" {
		return t.parts[0].literal
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == "" {
			b.WriteString(p.literal)
			continue
		}
		v, _ := placeholder(p.field, e)
		if escape != nil {
			v = escape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// TwinID returns the id of the twin e is about: for telemetry, the twin named in its source
// ("<host>/digitaltwins/<twinId>"), since its subject is the component; for every other
// event, the subject up to its first '/' (a relationship's subject is
// "<twinId>/relationships/<relationshipId>"). It returns "" when e names no twin.
func TwinID(e *event.Event) string {
	if e.Type == event.Telemetry {
		_, id, _ := strings.Cut(e.Source, "/digitaltwins/")
		return id
	}
	id, _, _ := strings.Cut(e.Subject, "/")
	return id
}
