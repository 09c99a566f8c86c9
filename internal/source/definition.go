// Package source is the registry of ingress sources and mappings: it parses and checks their
// definitions, stores them, runs one runner.Runner per source with a source built by the
// source's kind (and one for the change log, $events, while mappings read it), hands each
// runner its source's compiled mappings, and reports each source's status and dead letters.
// It also holds the http kind, whose messages are pushed through the API.
package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
)

// Kind is one source type: how its settings are read and checked, and how its source is
// built. Build kinds with KindOf.
type Kind struct {
	decode func(raw json.RawMessage) (settings, error)
}

// settings are one source's decoded, valid settings.
type settings interface {
	// redacted returns the settings with secrets blanked, for display.
	redacted() any
	// secrets returns the secret values of the settings (see redact.Values).
	secrets() []string
	// reach returns what the settings' connections reach.
	reach() netpolicy.Reach
	// withPolicy returns the settings with their connections checked against p.
	withPolicy(p *netpolicy.Policy) settings
	// config returns the connector's settings, such as mqtt.SourceConfig.
	config() any
	newSource(name string, logger *slog.Logger) (ingress.Source, error)
}

// Settings is the shape of a connector's SourceConfig (see the connector packages): Validate
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

// KindOf returns the Kind of a connector from its NewSource, which builds the source of the
// source named name (from which it may derive a stable client id, consumer or group name).
func KindOf[C Settings[C], S ingress.Source](newSource func(C, string, *slog.Logger) (S, error)) Kind {
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
		return typed[C, S]{c: c, newSourceFn: newSource}, nil
	}}
}

type typed[C Settings[C], S ingress.Source] struct {
	c           C
	newSourceFn func(C, string, *slog.Logger) (S, error)
}

func (t typed[C, S]) redacted() any { return t.c.Redacted() }

func (t typed[C, S]) secrets() []string { return redact.Values(t.c, t.c.Redacted()) }

func (t typed[C, S]) reach() netpolicy.Reach { return t.c.Reach() }

func (t typed[C, S]) withPolicy(p *netpolicy.Policy) settings {
	t.c = t.c.WithPolicy(p)
	return t
}

func (t typed[C, S]) config() any { return t.c }

func (t typed[C, S]) newSource(name string, logger *slog.Logger) (ingress.Source, error) {
	return t.newSourceFn(t.c, name, logger)
}

// Definition is a parsed source definition: the JSON object
//
//	{"sourceType": "<kind>", <that kind's settings>..., "maxMessageBytes": n, "dedupWindow": "1h"}
//
// where maxMessageBytes (the largest message applied; a larger one is a dead letter) and
// dedupWindow (how long message ids are remembered) are optional and default to the
// registry's.
type Definition struct {
	Type            string
	MaxMessageBytes int
	DedupWindow     time.Duration
	// Raw is the definition as given, kept by the store.
	Raw      json.RawMessage
	settings settings
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid source definition")

// Parse reads and checks a source definition against kinds. The error lists every problem
// found, each naming its field path.
func Parse(raw json.RawMessage, kinds map[string]Kind) (Definition, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Definition{}, fmt.Errorf("%w: the body must be a JSON object", ErrInvalid)
	}
	def := Definition{Raw: raw}
	var errs []error
	if t, ok := fields["sourceType"]; !ok {
		errs = append(errs, errors.New("sourceType: required"))
	} else if err := json.Unmarshal(t, &def.Type); err != nil {
		errs = append(errs, errors.New("sourceType: must be a string"))
	} else if def.Type == "" { // "" or null
		errs = append(errs, errors.New("sourceType: required"))
	}
	delete(fields, "sourceType")
	if v, ok := fields["maxMessageBytes"]; ok {
		if err := json.Unmarshal(v, &def.MaxMessageBytes); err != nil || def.MaxMessageBytes <= 0 {
			errs = append(errs, errors.New("maxMessageBytes: must be a positive integer"))
		}
		delete(fields, "maxMessageBytes")
	}
	if v, ok := fields["dedupWindow"]; ok {
		var s string
		d, err := time.Duration(0), json.Unmarshal(v, &s)
		if err == nil {
			d, err = time.ParseDuration(s)
		}
		if err != nil || d <= 0 {
			errs = append(errs, errors.New(`dedupWindow: must be a positive duration such as "1h"`))
		}
		def.DedupWindow = d
		delete(fields, "dedupWindow")
	}
	kind, ok := kinds[def.Type]
	if !ok && def.Type != "" {
		names := make([]string, 0, len(kinds))
		for name := range kinds {
			names = append(names, name)
		}
		slices.Sort(names)
		errs = append(errs, fmt.Errorf("sourceType: %q is not one of %s", def.Type, strings.Join(names, ", ")))
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

// Settings returns the source's connector settings (such as mqtt.SourceConfig), nil for
// $events's definition.
func (d Definition) Settings() any {
	if d.settings == nil {
		return nil
	}
	return d.settings.config()
}

// Redacted returns the definition as GET shows it: its settings with secrets blanked,
// sourceType, and the limits it sets. $events's has only its sourceType.
func (d Definition) Redacted() map[string]any {
	out := map[string]any{}
	if d.settings != nil {
		if b, err := json.Marshal(d.settings.redacted()); err == nil {
			// Settings are JSON-tagged structs; they decode into a map.
			_ = json.Unmarshal(b, &out)
		}
	}
	out["sourceType"] = d.Type
	if d.MaxMessageBytes != 0 {
		out["maxMessageBytes"] = d.MaxMessageBytes
	}
	if d.DedupWindow != 0 {
		out["dedupWindow"] = d.DedupWindow.String()
	}
	return out
}
