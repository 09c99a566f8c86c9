package mapping

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/twin"
)

// Mapping is a compiled Definition: an ingress.Mapper. It is safe for concurrent use.
type Mapping struct {
	def   Definition
	cfg   Config
	graph Graph

	// condition is nil without a condition; conditionPerTwin is set when it refers to twin,
	// and is then evaluated for each target twin rather than once per message.
	condition        *program
	conditionPerTwin bool
	// Exactly one of twinID and twinIDs is set.
	twinID, twinIDs *program
	// patch holds the patch entries sorted by path.
	patch     []patchEntry
	telemetry *program
	// createModel is the model of twins to create, and newTwin the document such a twin has
	// before the patch: its components, empty.
	createModel string
	newTwin     map[string]any
	// twinVar is set when an expression evaluated for each target refers to twin.
	twinVar bool

	// runs pools the state of evaluations.
	runs sync.Pool
}

var _ ingress.Mapper = (*Mapping)(nil)

// program is one compiled expression, and the definition field it came from.
type program struct {
	field string
	prg   cel.Program
}

// patchEntry is one compiled entry of Definition.Patch.
type patchEntry struct {
	program
	path string
	segs []string
}

// Compile checks def (see Definition.Validate), compiles its expressions and returns the
// Mapping. Every problem is reported, as *FieldErrors joined: a field that is malformed, an
// expression that does not compile (with CEL's message and position) or gives the wrong
// type, an expression whose estimated cost for inputs of cfg.EstimateSize is over
// cfg.CostLimit, a createTwin model that deps.Models does not hold, and a patch path that
// model cannot hold.
func Compile(def Definition, cfg Config, deps Deps) (*Mapping, error) {
	cfg = cfg.withDefaults()
	ev, err := newEnvs(cfg, deps.Graph != nil)
	if err != nil {
		return nil, err
	}
	m := &Mapping{def: def, cfg: cfg, graph: deps.Graph}
	c := compiler{cfg: cfg, errs: def.validate()}
	if def.Condition != "" {
		m.condition = c.compile("condition", def.Condition, ev.target, cel.BoolType)
		m.conditionPerTwin = m.condition != nil && refersTo(c.last, varTwin)
	}
	if def.TwinID != "" {
		m.twinID = c.compile("twinId", def.TwinID, ev.message, cel.StringType)
	}
	if def.TwinIDs != "" {
		m.twinIDs = c.compile("twinIds", def.TwinIDs, ev.message, cel.ListType(cel.StringType))
	}
	for _, path := range slices.Sorted(maps.Keys(def.Patch)) {
		if strings.TrimSpace(def.Patch[path]) == "" {
			continue // Validate reported it
		}
		p := c.compile(patchField(path), def.Patch[path], ev.target, nil)
		segs, err := twin.SplitPointer(path)
		if p != nil && err == nil {
			m.patch = append(m.patch, patchEntry{program: *p, path: path, segs: segs})
		}
		m.twinVar = m.twinVar || refersTo(c.last, varTwin)
	}
	if def.Telemetry != "" {
		m.telemetry = c.compile("telemetry", def.Telemetry, ev.target, cel.MapType(cel.StringType, cel.DynType))
		m.twinVar = m.twinVar || refersTo(c.last, varTwin)
	}
	m.twinVar = m.twinVar || m.conditionPerTwin
	if def.CreateTwin != nil && validDTMI(def.CreateTwin.Model) {
		m.createModel = def.CreateTwin.Model
		m.newTwin, c.errs = checkModel(def, deps.Models, c.errs)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return m, nil
}

// Definition returns the definition the mapping was compiled from.
func (m *Mapping) Definition() Definition { return m.def }

// compiler compiles a definition's expressions and collects their problems.
type compiler struct {
	cfg  Config
	errs []error
	// last is the checked AST of the last expression compiled, nil when it failed.
	last *cel.Ast
}

// compile compiles one expression of field in env. want, when not nil, is the type the
// expression must give; dyn is accepted, and checked when evaluated. It returns nil and
// records the problem when the expression does not compile or its estimated cost is over
// the limit.
func (c *compiler) compile(field, src string, env *cel.Env, want *cel.Type) *program {
	c.last = nil
	source := common.NewStringSource(src, field)
	checked, iss := env.CompileSource(source)
	if iss.Err() != nil {
		c.errs = append(c.errs, &FieldError{Field: field, Message: celIssues(source, iss)})
		return nil
	}
	if out := checked.OutputType(); want != nil && !mayBe(want, out) {
		c.errs = append(c.errs, fieldErrorf(field, "the expression gives %s, not %s", cel.FormatCELType(out), cel.FormatCELType(want)))
		return nil
	}
	worst, err := estimateCost(env, checked, c.cfg)
	if err != nil {
		c.errs = append(c.errs, fieldErrorf(field, "estimate the expression's cost: %v", err))
		return nil
	}
	if worst > c.cfg.CostLimit {
		c.errs = append(c.errs, fieldErrorf(field, "the expression may cost %s on inputs of %d bytes or items, over the cost limit of %d: "+
			"its cost grows too fast with its input (a loop within a loop?)", costString(worst), c.cfg.EstimateSize, c.cfg.CostLimit))
		return nil
	}
	prg, err := env.Program(checked, cel.CostLimit(c.cfg.CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		c.errs = append(c.errs, fieldErrorf(field, "%v", err))
		return nil
	}
	c.last = checked
	return &program{field: field, prg: prg}
}

// mayBe reports whether an expression of type got may give a value of type want when it
// runs: got is want, or dyn where want has a type (list(dyn) may be list(string)).
func mayBe(want, got *cel.Type) bool {
	if got.IsExactType(cel.DynType) || want.IsAssignableType(got) {
		return true
	}
	wp, gp := want.Parameters(), got.Parameters()
	if want.Kind() != got.Kind() || len(wp) != len(gp) || len(wp) == 0 {
		return false
	}
	for i := range wp {
		if !mayBe(wp[i], gp[i]) {
			return false
		}
	}
	return true
}

// celIssues formats CEL's compile errors as "line:column: message" followed by the source
// line and a caret under the column, one error after the other.
func celIssues(source common.Source, iss *cel.Issues) string {
	var b strings.Builder
	for i, e := range iss.Errors() {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.TrimPrefix(e.ToDisplayString(source), "ERROR: "+source.Description()+":"))
	}
	return b.String()
}

// costString writes a cost estimate, "an unbounded amount" for one CEL cannot bound.
func costString(c uint64) string {
	if c == ^uint64(0) {
		return "an unbounded amount"
	}
	return fmt.Sprint(c)
}

// refersTo reports whether a checked expression refers to the variable name.
func refersTo(checked *cel.Ast, name string) bool {
	if checked == nil {
		return false
	}
	for _, ref := range checked.NativeRep().ReferenceMap() {
		if ref.Name == name && ref.Value == nil {
			return true
		}
	}
	return false
}

// validDTMI reports whether id is a DTMI.
func validDTMI(id string) bool {
	_, err := dtdl.ParseDTMI(id)
	return err == nil
}

// checkModel checks the model of a definition's createTwin against models, and each patch
// path against it. It returns the document of a new twin of the model before any patch:
// every component present and empty, as the twin service requires.
func checkModel(def Definition, models Models, errs []error) (map[string]any, []error) {
	model := def.CreateTwin.Model
	if models == nil {
		return nil, append(errs, fieldErrorf("createTwin.model", "the models are not available to check %s", model))
	}
	iface, ok := models.Interface(model)
	if !ok {
		return nil, append(errs, fieldErrorf("createTwin.model", "there is no model %s; add it before the mapping", model))
	}
	for _, path := range slices.Sorted(maps.Keys(def.Patch)) {
		segs, err := twin.SplitPointer(path)
		if err != nil || checkSegments(segs) != "" {
			continue // Validate reported it
		}
		if err := checkPath(iface, segs); err != nil {
			errs = append(errs, fieldErrorf(patchField(path), "%s", pathProblem(err)))
		}
	}
	doc := make(map[string]any, len(iface.Components))
	for name := range iface.Components {
		doc[name] = map[string]any{twin.KeyMetadata: map[string]any{}}
	}
	return doc, errs
}

// pathProblem words a CheckPath error without the path, which the field names already.
func pathProblem(err error) string {
	var ve *dtdl.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) == 0 {
		return err.Error()
	}
	msgs := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		msgs[i] = p.Message
	}
	return strings.Join(msgs, "; ")
}

// checkPath checks a patch path that checkSegments accepts against an Interface. A metadata
// path must name a property of the twin or of one of its components.
func checkPath(iface *dtdl.Interface, segs []string) error {
	switch {
	case segs[0] == twin.KeyMetadata:
		return iface.CheckPath(segs[1:2])
	case len(segs) > 1 && segs[1] == twin.KeyMetadata:
		return iface.CheckPath([]string{segs[0], segs[2]})
	}
	return iface.CheckPath(segs)
}
