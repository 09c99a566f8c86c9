// Package eventroute keeps the event routes in effect: each route sends the events its filter
// matches to one endpoint. Filters are written in the route filter language of ADT and
// compiled with the shared expression grammar of package expr.
package eventroute

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/expr"
)

// Filter is a compiled route filter. It is immutable and safe for concurrent use.
//
// The language is ADT's: the CloudEvents attributes type, source, subject, id, dataschema,
// datacontenttype and specversion, and $body.<path> for any field of the event's data
// (fields inside arrays cannot be reached); the comparisons = != < <= > >=, AND, OR, NOT,
// parentheses and IN [...]; STARTS_WITH, ENDS_WITH and CONTAINS (and the other functions of
// expr.Builtins); string, number, true, false and null literals. The filter true matches every
// event and false none. Attribute names are case sensitive, keywords are not.
//
// Evaluation follows expr.Eval: an attribute the event does not carry (an empty one, such as
// the subject of telemetry sent to a twin) or a $body path that does not resolve is
// undefined, and a filter whose value is undefined does not match.
//
// The undocumented legacy form $eventType = '<name>' that ADT's SDK tests send is accepted,
// with the old routing-source names: DigitalTwinTelemetryMessages (telemetry),
// DigitalTwinLifecycleNotification (twin create and delete), DigitalTwinChangeNotification
// (twin update) and DigitalTwinRelationshipChangeNotification (relationship events).
type Filter struct {
	src  string
	root expr.Node
	fns  expr.Funcs
}

// ErrFilterInvalid is wrapped by every error Compile returns.
var ErrFilterInvalid = errors.New("invalid route filter")

// attributes are the CloudEvents attributes a filter may name, besides $body and $eventType.
var attributes = map[string]func(*event.Event) string{
	"type":            func(e *event.Event) string { return e.Type },
	"source":          func(e *event.Event) string { return e.Source },
	"subject":         func(e *event.Event) string { return e.Subject },
	"id":              func(e *event.Event) string { return e.ID },
	"dataschema":      func(e *event.Event) string { return e.DataSchema },
	"datacontenttype": func(e *event.Event) string { return e.DataContentType },
	"specversion":     func(e *event.Event) string { return e.SpecVersion },
}

const (
	bodyName      = "$body"
	eventTypeName = "$eventType"
)

// Compile parses and checks src. Errors wrap ErrFilterInvalid and say what is wrong and where.
func Compile(src string) (*Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%w: the filter is empty", ErrFilterInvalid)
	}
	root, err := expr.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilterInvalid, err)
	}
	fns := expr.Builtins()
	if err := expr.Check(root, fns); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilterInvalid, err)
	}
	if err := checkNames(root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilterInvalid, err)
	}
	if !boolean(root) {
		return nil, fmt.Errorf("%w: %w", ErrFilterInvalid,
			expr.Errorf(root.Pos(), "the filter %s is not a condition", root))
	}
	return &Filter{src: src, root: root, fns: fns}, nil
}

// checkNames rejects paths that name nothing a filter can read.
func checkNames(root expr.Node) error {
	var err error
	expr.Walk(root, func(n expr.Node) bool {
		p, ok := n.(*expr.Path)
		if !ok || err != nil {
			return err == nil
		}
		head := p.Names[0]
		switch {
		case head == bodyName:
			if len(p.Names) < 2 {
				err = expr.Errorf(p.At, "$body needs a field, as in $body.modelId")
			}
		case head == eventTypeName || attributes[head] != nil:
			if len(p.Names) > 1 {
				err = expr.Errorf(p.At, "attribute %s has no fields", head)
			}
		default:
			err = expr.Errorf(p.At, "unknown attribute '%s'; a filter reads type, source, subject, id, "+
				"dataschema, datacontenttype, specversion and $body.<field>", head)
		}
		return err == nil
	})
	return err
}

// boolean reports whether n yields a boolean: a condition, not a bare value.
func boolean(n expr.Node) bool {
	switch n := n.(type) {
	case *expr.Literal:
		_, ok := n.Value.(bool)
		return ok
	case *expr.Path:
		return false
	}
	return true
}

// String returns the filter as written.
func (f *Filter) String() string { return f.src }

// Match reports whether the filter matches e.
func (f *Filter) Match(e *event.Event) bool {
	if lit, ok := f.root.(*expr.Literal); ok {
		return lit.Value == true
	}
	return expr.Match(f.root, &eventEnv{e: e}, f.fns)
}

// eventEnv resolves a filter's paths against one event, decoding its data at most once.
type eventEnv struct {
	e       *event.Event
	body    any
	decoded bool
	valid   bool
}

// legacyTypes maps ADT's old routing-source names to the event types they cover.
var legacyTypes = map[string][]string{
	"DigitalTwinTelemetryMessages":              {event.Telemetry},
	"DigitalTwinLifecycleNotification":          {event.TwinCreate, event.TwinDelete},
	"DigitalTwinChangeNotification":             {event.TwinUpdate},
	"DigitalTwinRelationshipChangeNotification": {event.RelationshipCreate, event.RelationshipUpdate, event.RelationshipDelete},
}

// Lookup implements expr.Env.
func (env *eventEnv) Lookup(path []string) (any, bool) {
	switch head := path[0]; head {
	case bodyName:
		return env.lookupBody(path[1:])
	case eventTypeName:
		for name, types := range legacyTypes {
			for _, t := range types {
				if t == env.e.Type {
					return name, true
				}
			}
		}
		return nil, false
	default:
		get := attributes[head]
		if get == nil {
			return nil, false
		}
		v := get(env.e)
		return v, v != ""
	}
}

// lookupBody walks path through the event's data. Arrays are not entered: ADT filters cannot
// reach fields inside them.
func (env *eventEnv) lookupBody(path []string) (any, bool) {
	if !env.decoded {
		env.decoded = true
		env.valid = len(env.e.Data) > 0 && json.Unmarshal(env.e.Data, &env.body) == nil
	}
	if !env.valid {
		return nil, false
	}
	v := env.body
	for _, name := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[name]; !ok {
			return nil, false
		}
	}
	return v, true
}
