// Package endpoint is the registry of endpoints: it parses and checks their
// definitions, stores them, runs one outbox.Relay per endpoint with a sink built by the
// endpoint's connector, and reports each endpoint's status, dead letters and replays.
package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// Kind is one endpoint type: how its settings are read and checked, and how its sink is
// built. Build kinds with KindOf.
type Kind struct {
	decode func(raw json.RawMessage) (settings, error)
}

// settings are one endpoint's decoded, valid connector settings.
type settings interface {
	// redacted returns the settings with secrets blanked, for display.
	redacted() any
	// secrets returns the secret values of the settings (see redact.Values).
	secrets() []string
	// reach returns what the settings' connections reach.
	reach() netpolicy.Reach
	// withPolicy returns the settings with their connections checked against p.
	withPolicy(p *netpolicy.Policy) settings
	// newSink builds the kind's sink for a relay that keeps up to window published events
	// awaiting acknowledgement (see WindowSizer).
	newSink(logger *slog.Logger, window int) (sink.Sink, error)
	// handshake checks that the destination agrees to receive the endpoint's events; nil
	// when the kind has none.
	handshake(ctx context.Context) error
	// hasHandshake reports whether the kind has a handshake.
	hasHandshake() bool
	// maxBatch is the kind's batch size when the delivery policy sets none; 0 means the
	// relay's default.
	maxBatch() int
	// publishes reports whether the kind's sinks are sink.Publishers.
	publishes() bool
	// feeds reports whether the endpoint sends where a source with the connector settings
	// src reads (see Feeder).
	feeds(src any) bool
}

// Feeder is implemented by connector settings that can tell whether their endpoint sends
// where a source of twinflow reads: Feeds gets the source's connector settings (see
// source.Definition.Settings) and reports false for a kind it does not know.
type Feeder interface {
	Feeds(source any) bool
}

// BatchSizer is implemented by connector settings whose sink delivers best in batches of
// another size than the relay's default; DefaultMaxBatch returns that size.
type BatchSizer interface {
	DefaultMaxBatch() int
}

// WindowSizer is implemented by connector settings whose sink.Publisher bounds the published
// events awaiting acknowledgement itself. WithWindow returns the settings for a relay that
// keeps up to events of them in flight (outbox.Window of its batch size), so that the bound
// never stalls the relay's pipelining.
type WindowSizer[C any] interface {
	WithWindow(events int) C
}

// Settings is the shape of a connector's SinkConfig (see the connector packages): Validate
// reports every problem, each naming its field; Redacted returns the settings with every
// secret blanked (with redact.Mask, or redact.URL for URLs), which is also what tells the
// registry which values to keep out of status and logs; Reach returns what the settings'
// connections reach, for the egress policy to check; WithPolicy returns the settings with
// every connection checked against a policy.
type Settings[C any] interface {
	Validate() error
	Redacted() C
	Reach() netpolicy.Reach
	WithPolicy(p *netpolicy.Policy) C
}

// KindOf returns the Kind of a connector from its NewSink and, if it has one, its validation
// handshake (nil otherwise).
func KindOf[C Settings[C], S sink.Sink](newSink func(C, *slog.Logger) (S, error), handshake func(context.Context, C) error) Kind {
	return Kind{decode: func(raw json.RawMessage) (settings, error) {
		var c C
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, err
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return typed[C, S]{c: c, newSinkFn: newSink, handshakeFn: handshake}, nil
	}}
}

type typed[C Settings[C], S sink.Sink] struct {
	c           C
	newSinkFn   func(C, *slog.Logger) (S, error)
	handshakeFn func(context.Context, C) error
}

func (t typed[C, S]) redacted() any { return t.c.Redacted() }

func (t typed[C, S]) secrets() []string { return redact.Values(t.c, t.c.Redacted()) }

func (t typed[C, S]) reach() netpolicy.Reach { return t.c.Reach() }

func (t typed[C, S]) withPolicy(p *netpolicy.Policy) settings {
	t.c = t.c.WithPolicy(p)
	return t
}

func (t typed[C, S]) newSink(logger *slog.Logger, window int) (sink.Sink, error) {
	c := t.c
	if w, ok := any(c).(WindowSizer[C]); ok {
		c = w.WithWindow(window)
	}
	return t.newSinkFn(c, logger)
}

func (t typed[C, S]) maxBatch() int {
	if b, ok := any(t.c).(BatchSizer); ok {
		return b.DefaultMaxBatch()
	}
	return 0
}

func (t typed[C, S]) publishes() bool {
	var s S
	_, ok := any(s).(sink.Publisher)
	return ok
}

func (t typed[C, S]) hasHandshake() bool { return t.handshakeFn != nil }

func (t typed[C, S]) feeds(src any) bool {
	f, ok := any(t.c).(Feeder)
	return ok && f.Feeds(src)
}

func (t typed[C, S]) handshake(ctx context.Context) error {
	if t.handshakeFn == nil {
		return nil
	}
	return t.handshakeFn(ctx, t.c)
}

// Delivery is an endpoint's delivery policy, the "delivery" member of its definition. Zero
// fields take the outbox defaults.
type Delivery struct {
	// TTL is how long an event may wait for delivery before it is dead-lettered ("24h").
	TTL Duration `json:"ttl,omitzero"`
	// MaxAttempts dead-letters an event after that many failed sends; 0 means no limit but
	// the TTL.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// MaxBatch is the most events in one send; 0 means the kind's default (see BatchSizer),
	// else the outbox's.
	MaxBatch int `json:"maxBatch,omitempty"`
	// MinBackoff and MaxBackoff bound the wait between retries.
	MinBackoff Duration `json:"minBackoff,omitzero"`
	MaxBackoff Duration `json:"maxBackoff,omitzero"`
}

// validate reports every problem with d, each naming its field path.
func (d Delivery) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    Duration
	}{{"ttl", d.TTL}, {"minBackoff", d.MinBackoff}, {"maxBackoff", d.MaxBackoff}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("delivery.%s: %v is negative", f.name, time.Duration(f.v)))
		}
	}
	if d.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("delivery.maxAttempts: %d is negative", d.MaxAttempts))
	}
	if d.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("delivery.maxBatch: %d is negative", d.MaxBatch))
	}
	if d.MaxBackoff != 0 && d.MinBackoff > d.MaxBackoff {
		errs = append(errs, errors.New("delivery.maxBackoff: less than minBackoff"))
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration written in JSON as a Go duration string ("30s", "24h").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Definition is a parsed endpoint definition: the JSON object
//
//	{"endpointType": "<kind>", <that kind's settings>..., "delivery": {...}}
//
// where delivery is optional (see Delivery), or that object as the properties of an ARM
// resource, {"properties": {...}}, as ADT's control plane takes it (the read-only id, name,
// type and systemData ARM returns beside properties are ignored).
type Definition struct {
	Type     string
	Delivery Delivery
	// Raw is the definition as given, kept by the store.
	Raw      json.RawMessage
	settings settings
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid endpoint definition")

// Parse reads and checks an endpoint definition against kinds. The error lists every
// problem found, each naming its field path.
func Parse(raw json.RawMessage, kinds map[string]Kind) (Definition, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Definition{}, fmt.Errorf("%w: the body must be a JSON object", ErrInvalid)
	}
	def := Definition{Raw: raw}
	var errs []error
	if props, ok := fields["properties"]; ok {
		if _, flat := fields["endpointType"]; !flat {
			errs = append(errs, armResource(fields)...)
			fields = nil
			if err := json.Unmarshal(props, &fields); err != nil || fields == nil {
				return Definition{}, fmt.Errorf("%w: properties: must be a JSON object", ErrInvalid)
			}
		}
	}
	if t, ok := fields["endpointType"]; !ok {
		errs = append(errs, errors.New("endpointType: required"))
	} else if err := json.Unmarshal(t, &def.Type); err != nil {
		errs = append(errs, errors.New("endpointType: must be a string"))
	} else if def.Type == "" { // "" or null
		errs = append(errs, errors.New("endpointType: required"))
	}
	delete(fields, "endpointType")
	if d, ok := fields["delivery"]; ok {
		dec := json.NewDecoder(bytes.NewReader(d))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&def.Delivery); err != nil {
			errs = append(errs, fmt.Errorf("delivery: %w", err))
		} else if err := def.Delivery.validate(); err != nil {
			errs = append(errs, err)
		}
		delete(fields, "delivery")
	}
	kind, ok := kinds[def.Type]
	if !ok && def.Type != "" {
		names := make([]string, 0, len(kinds))
		for name := range kinds {
			names = append(names, name)
		}
		slices.Sort(names)
		errs = append(errs, fmt.Errorf("endpointType: %q is not one of %s", def.Type, strings.Join(names, ", ")))
	}
	if ok {
		rest, err := json.Marshal(fields)
		if err == nil {
			def.settings, err = kind.decode(rest)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Definition{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return def, nil
}

// armResource reports the members of an ARM resource other than properties and its
// read-only members.
func armResource(fields map[string]json.RawMessage) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		switch k {
		case "properties", "id", "name", "type", "systemData":
		default:
			errs = append(errs, fmt.Errorf("%s: not a member of an endpoint resource; settings go under properties", k))
		}
	}
	return errs
}

// Feeds reports whether the endpoint sends where a source whose connector settings are src
// reads, so that a route to it would feed twinflow's events back to that source. Kinds whose
// settings are no Feeder (webhook, EventGrid) report false.
func (d Definition) Feeds(src any) bool {
	return d.settings != nil && d.settings.feeds(src)
}

// Redacted returns the definition as GET shows it: its settings with secrets blanked,
// endpointType and delivery.
func (d Definition) Redacted() map[string]any {
	out := map[string]any{}
	if b, err := json.Marshal(d.settings.redacted()); err == nil {
		// Settings are JSON-tagged structs; they decode into a map.
		_ = json.Unmarshal(b, &out)
	}
	out["endpointType"] = d.Type
	if d.Delivery != (Delivery{}) {
		out["delivery"] = d.Delivery
	}
	return out
}
