package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"cel.dev/cel-go/common/functions"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/twin"
)

// EvalError is a mapping's failure on one message, the message's fault: the field whose
// expression failed or gave an unusable value, the target twin when it was evaluated for one,
// and why.
type EvalError struct {
	Field  string
	TwinID string
	Err    error
}

// Error returns "field: reason", naming the target twin when there is one.
func (e *EvalError) Error() string {
	if e.TwinID != "" {
		return fmt.Sprintf("%s (twin %s): %v", e.Field, e.TwinID, e.Err)
	}
	return e.Field + ": " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *EvalError) Unwrap() error { return e.Err }

// ErrCostLimit is wrapped by the EvalError of a message whose evaluation went over
// Config.CostLimit.
var ErrCostLimit = errors.New("CEL cost limit exceeded")

// Map turns message msg into the changes the mapping makes of it, reading target twins and
// twinById's twins through twins; it applies nothing. See the package documentation for the
// order of evaluation. Errors are *EvalErrors, twin.TwinNotFound for a missing target twin
// the mapping does not create, or wrap ingress.ErrUnavailable when twins, the graph or ctx
// failed.
func (m *Mapping) Map(ctx context.Context, msg ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
	r := m.newRun(ctx, &msg, twins)
	defer m.release(r)
	if err := r.run(); err != nil {
		return nil, err
	}
	return r.changes, nil
}

// Result is what a dry run of a mapping makes of one message.
type Result struct {
	// Selected is false when the condition rejected the message (or every target twin).
	Selected bool `json:"selected"`
	// Changes are what the message would change, one per target twin, in order.
	Changes []ResultChange `json:"changes"`
	// Cost is the CEL cost the evaluation took, to compare with the cost limit.
	Cost uint64 `json:"cost"`
}

// ResultChange is one ingress.Change in JSON form.
type ResultChange struct {
	TwinID string `json:"twinId"`
	// CreateModel is set when the twin does not exist and would be created of that model.
	CreateModel string          `json:"createModel,omitempty"`
	Patch       json.RawMessage `json:"patch,omitempty"`
	Telemetry   json.RawMessage `json:"telemetry,omitempty"`
}

// DryRun maps msg as Map does and reports the changes with how the evaluation went; it
// applies nothing. Its errors are Map's.
func (m *Mapping) DryRun(ctx context.Context, msg ingress.Message, twins ingress.TwinReader) (Result, error) {
	r := m.newRun(ctx, &msg, twins)
	defer m.release(r)
	if err := r.run(); err != nil {
		return Result{}, err
	}
	res := Result{Selected: r.selected, Changes: make([]ResultChange, len(r.changes)), Cost: r.spent}
	for i, c := range r.changes {
		res.Changes[i] = ResultChange{TwinID: c.TwinID, CreateModel: c.CreateModel, Patch: c.Patch, Telemetry: c.Telemetry}
	}
	return res, nil
}

// run is the evaluation of a mapping on one message. It is the activation of the mapping's
// programs: it resolves the CEL variables (the message's parts lazily, each converted once)
// and the late-bound functions. Runs are pooled by their Mapping; everything but changes is
// reused.
type run struct {
	m     *Mapping
	ctx   context.Context
	msg   *ingress.Message
	twins ingress.TwinReader

	// selected records that the condition accepted the message or a target.
	selected bool
	changes  []ingress.Change
	// spent is the CEL cost so far.
	spent uint64
	// fail is the first read failure of a function, which is not the message's fault.
	fail error

	// The message's parts as CEL values, nil until an expression asks for them.
	body, topic, key, headers, time ref.Val
	// twin is the current target twin's document (null when it does not exist).
	twin ref.Val
	// byID caches twinById's documents.
	byID map[string]ref.Val
	// writes holds the current target's patch entries.
	writes []write
	// The late-bound functions, bound to this run once.
	twinByIDFn, incomingFn, outgoingFn functions.LateBoundOp
}

var _ interpreter.FunctionActivation = (*run)(nil)

// newRun returns a run of m on msg, from m's pool.
func (m *Mapping) newRun(ctx context.Context, msg *ingress.Message, twins ingress.TwinReader) *run {
	r, _ := m.runs.Get().(*run)
	if r == nil {
		r = &run{m: m}
		r.twinByIDFn, r.incomingFn, r.outgoingFn = r.twinByID, r.incoming, r.outgoing
	}
	r.ctx, r.msg, r.twins = ctx, msg, twins
	return r
}

// release returns r to m's pool, without the message's values, so that the pool keeps no
// message alive.
func (m *Mapping) release(r *run) {
	r.ctx, r.msg, r.twins = nil, nil, nil
	r.selected, r.changes, r.spent, r.fail = false, nil, 0, nil
	r.body, r.topic, r.key, r.headers, r.time, r.twin = nil, nil, nil, nil, nil, nil
	clear(r.byID)
	clear(r.writes[:cap(r.writes)])
	m.runs.Put(r)
}

// run evaluates the mapping on the run's message.
func (r *run) run() error {
	m := r.m
	if n := len(r.msg.Body); n > m.cfg.MaxMessageBytes {
		return &EvalError{Field: "message.body", Err: fmt.Errorf("the body is %d bytes, over the limit of %d", n, m.cfg.MaxMessageBytes)}
	}
	if m.condition != nil && !m.conditionPerTwin {
		ok, err := r.condition()
		if err != nil || !ok {
			return err
		}
	}
	ids, err := r.targets()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := r.target(id); err != nil {
			return err
		}
	}
	if m.condition == nil {
		r.selected = true
	}
	return nil
}

// condition evaluates the mapping's condition.
func (r *run) condition() (bool, error) {
	v, err := r.eval(r.m.condition)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, r.fieldError(r.m.condition.field, fmt.Errorf("the condition gave %s, not a bool", describe(v)))
	}
	r.selected = r.selected || bool(b)
	return bool(b), nil
}

// targets evaluates twinId or twinIds: the target twins' ids, without duplicates.
func (r *run) targets() ([]string, error) {
	if p := r.m.twinID; p != nil {
		v, err := r.eval(p)
		if err != nil {
			return nil, err
		}
		id, ok := v.(types.String)
		if !ok || id == "" {
			return nil, r.fieldError(p.field, fmt.Errorf("the twin id is %s, not a non-empty string", describe(v)))
		}
		return []string{string(id)}, nil
	}
	p := r.m.twinIDs
	v, err := r.eval(p)
	if err != nil {
		return nil, err
	}
	list, ok := v.(traits.Lister)
	if !ok {
		return nil, r.fieldError(p.field, fmt.Errorf("the twin ids are %s, not a list of strings", describe(v)))
	}
	n, _ := list.Size().(types.Int)
	ids := make([]string, 0, n)
	var seen map[string]bool // for long lists; short ones are searched
	for i := range types.Int(n) {
		e := list.Get(i)
		id, ok := e.(types.String)
		if !ok || id == "" {
			return nil, r.fieldError(p.field, fmt.Errorf("twin id %d is %s, not a non-empty string", i, describe(e)))
		}
		switch {
		case n <= 16:
			if !slices.Contains(ids, string(id)) {
				ids = append(ids, string(id))
			}
		case !seen[string(id)]:
			if seen == nil {
				seen = make(map[string]bool, n)
			}
			seen[string(id)] = true
			ids = append(ids, string(id))
		}
	}
	return ids, nil
}

// target evaluates the mapping for target twin id and records its change, if any.
func (r *run) target(id string) error {
	m := r.m
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ingress.ErrUnavailable, err)
	}
	// Reading the twin is charged like twinById.
	if r.spent += graphCallCost; r.spent > m.cfg.CostLimit {
		field := "twinIds"
		if m.twinID != nil {
			field = "twinId"
		}
		return &EvalError{Field: field, TwinID: id, Err: fmt.Errorf("%w: reading the target twins took the message's cost to %d, over the limit of %d", ErrCostLimit, r.spent, m.cfg.CostLimit)}
	}
	data, exists, err := r.twins.Twin(id)
	if err != nil {
		return fmt.Errorf("%w: read twin %q: %w", ingress.ErrUnavailable, id, err)
	}
	var doc map[string]any
	decode := func() (err error) {
		if doc, r.twin, err = decodeDoc(data); err != nil {
			return fmt.Errorf("decode twin %q: %w", id, err)
		}
		return nil
	}
	r.twin = types.NullValue
	if exists && m.twinVar {
		if err := decode(); err != nil {
			return err
		}
	}
	if m.conditionPerTwin {
		ok, err := r.condition()
		if err != nil || !ok {
			return r.withTwin(id, err)
		}
	}
	if !exists {
		if m.createModel == "" {
			return twin.TwinNotFound(id)
		}
		doc = m.newTwin
	}
	writes := r.writes[:0]
	defer func() { r.writes = writes[:0] }()
	for i := range m.patch {
		e := &m.patch[i]
		v, err := r.eval(&e.program)
		if err != nil {
			return r.withTwin(id, err)
		}
		w := write{path: e.path, segs: e.segs}
		if opt, ok := v.(*types.Optional); ok {
			if !opt.HasValue() {
				continue // optional.none(): the entry writes nothing
			}
			v = opt.GetValue()
		}
		if w.value, err = toJSON(v); err != nil {
			return r.withTwin(id, r.fieldError(e.field, err))
		}
		w.remove = w.value == nil
		writes = append(writes, w)
	}
	if exists && doc == nil && needDoc(writes) {
		if err := decode(); err != nil {
			return err
		}
	}
	c := ingress.Change{TwinID: id}
	if p := addOrReplace(doc, writes); len(p) > 0 {
		if c.Patch, err = p.AppendJSON(make([]byte, 0, 64*len(p))); err != nil {
			return r.withTwin(id, r.fieldError("patch", err))
		}
	}
	if m.telemetry != nil {
		if c.Telemetry, err = r.telemetry(); err != nil {
			return r.withTwin(id, err)
		}
	}
	if !exists {
		c.CreateModel = m.createModel
	}
	if c.Patch != nil || c.Telemetry != nil || c.CreateModel != "" {
		r.changes = append(r.changes, c)
	}
	return nil
}

// needDoc reports whether addOrReplace needs the twin's document for writes: to remove
// only what exists, and to find the missing parents of a path below a property.
func needDoc(writes []write) bool {
	for _, w := range writes {
		if w.remove || (len(w.segs) > 1 && !isMetadataPath(w.segs)) {
			return true
		}
	}
	return false
}

// telemetry evaluates the telemetry expression: a JSON object, or nil for null or
// optional.none() (no telemetry).
func (r *run) telemetry() ([]byte, error) {
	p := r.m.telemetry
	v, err := r.eval(p)
	if err != nil {
		return nil, err
	}
	if opt, ok := v.(*types.Optional); ok {
		if !opt.HasValue() {
			return nil, nil
		}
		v = opt.GetValue()
	}
	if v == types.NullValue {
		return nil, nil
	}
	if _, ok := v.(traits.Mapper); !ok {
		return nil, r.fieldError(p.field, fmt.Errorf("the telemetry is %s, not an object", describe(v)))
	}
	j, err := toJSON(v)
	if err != nil {
		return nil, r.fieldError(p.field, err)
	}
	enc, err := twin.Encode(j)
	if err != nil {
		return nil, r.fieldError(p.field, err)
	}
	return enc, nil
}

// eval evaluates p, adds its cost to the message's, and returns its value or the error: the
// first read failure of a function, else an *EvalError.
func (r *run) eval(p *program) (ref.Val, error) {
	v, det, err := p.prg.Eval(r)
	if det != nil {
		if c := det.ActualCost(); c != nil {
			r.spent += *c
		}
	}
	if r.fail != nil {
		return nil, r.fail
	}
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			err = fmt.Errorf("%w: the expression went over the limit of %d", ErrCostLimit, r.m.cfg.CostLimit)
		} else if err.Error() == "no such overload" {
			err = fmt.Errorf("%w (no operator or function takes these argument types; note that JSON numbers are doubles: write 1.0, or convert with int() or double())", err)
		}
		return nil, r.fieldError(p.field, err)
	}
	if r.spent > r.m.cfg.CostLimit {
		return nil, r.fieldError(p.field, fmt.Errorf("%w: the message's expressions took %d, over the limit of %d", ErrCostLimit, r.spent, r.m.cfg.CostLimit))
	}
	return v, nil
}

// fieldError returns an *EvalError of field.
func (r *run) fieldError(field string, err error) error {
	return &EvalError{Field: field, Err: err}
}

// withTwin names target twin id in err when it is an *EvalError.
func (r *run) withTwin(id string, err error) error {
	var ee *EvalError
	if errors.As(err, &ee) && ee.TwinID == "" {
		ee.TwinID = id
	}
	return err
}

// describe names a CEL value's type for an error message, with the value when it is short.
func describe(v ref.Val) string {
	switch v := v.(type) {
	case types.Null:
		return "null"
	case types.String:
		if len(v) <= 64 {
			return fmt.Sprintf("the string %q", string(v))
		}
	case types.Bool, types.Int, types.Uint, types.Double:
		return fmt.Sprintf("the %s %v", v.Type().TypeName(), v.Value())
	}
	return "a value of type " + v.Type().TypeName()
}

// ResolveName resolves the CEL variables.
func (r *run) ResolveName(name string) (any, bool) {
	switch name {
	case varBody:
		if r.body == nil {
			r.body = bodyValue(r.msg.Body)
		}
		return r.body, true
	case varTopic:
		if r.topic == nil {
			r.topic = types.String(r.msg.Topic)
		}
		return r.topic, true
	case varKey:
		if r.key == nil {
			r.key = types.String(r.msg.Key)
		}
		return r.key, true
	case varHeaders:
		if r.headers == nil {
			h := r.msg.Headers
			if h == nil {
				h = map[string]string{}
			}
			r.headers = types.NewStringStringMap(jsonAdapter{}, h)
		}
		return r.headers, true
	case varTime:
		if r.time == nil {
			r.time = types.Timestamp{Time: r.msg.Time}
		}
		return r.time, true
	case varTwin:
		if r.twin == nil {
			return nil, false
		}
		return r.twin, true
	}
	return nil, false
}

// Parent returns nil: the run is the only activation.
func (r *run) Parent() interpreter.Activation { return nil }

// ResolveFunction resolves the late-bound functions.
func (r *run) ResolveFunction(name string) (functions.LateBoundOp, bool) {
	switch name {
	case fnTwinByID:
		return r.twinByIDFn, true
	case fnIncoming:
		return r.incomingFn, true
	case fnOutgoing:
		return r.outgoingFn, true
	}
	return nil, false
}

// twinByID implements twinById(id): the twin's document, or null when there is none.
func (r *run) twinByID(_ string, args ...ref.Val) ref.Val {
	id, ok := args[0].(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(args[0])
	}
	if v, ok := r.byID[string(id)]; ok {
		return v
	}
	data, exists, err := r.twins.Twin(string(id))
	if err != nil {
		return r.failed(fmt.Errorf("%w: twinById: read twin %q: %w", ingress.ErrUnavailable, string(id), err))
	}
	v := ref.Val(types.NullValue)
	if exists {
		var err error
		if _, v, err = decodeDoc(data); err != nil {
			return r.failed(fmt.Errorf("twinById: decode twin %q: %w", string(id), err))
		}
	}
	if r.byID == nil {
		r.byID = make(map[string]ref.Val)
	}
	r.byID[string(id)] = v
	return v
}

// incoming implements incoming(id, name).
func (r *run) incoming(_ string, args ...ref.Val) ref.Val {
	return r.related(args, r.m.graph.Incoming)
}

// outgoing implements outgoing(id, name).
func (r *run) outgoing(_ string, args ...ref.Val) ref.Val {
	return r.related(args, r.m.graph.Outgoing)
}

// related calls one of the graph's questions with the (id, name) arguments of a call.
func (r *run) related(args []ref.Val, ask func(context.Context, string, string) ([]string, error)) ref.Val {
	id, ok1 := args[0].(types.String)
	name, ok2 := args[1].(types.String)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	ids, err := ask(r.ctx, string(id), string(name))
	if err != nil {
		return r.failed(fmt.Errorf("%w: read relationships %q of twin %q: %w", ingress.ErrUnavailable, string(name), string(id), err))
	}
	return types.NewStringList(jsonAdapter{}, ids)
}

// failed records err as the run's read failure and returns it as a CEL error, which ends
// the evaluation.
func (r *run) failed(err error) ref.Val {
	if r.fail == nil {
		r.fail = err
	}
	return types.WrapErr(err)
}
