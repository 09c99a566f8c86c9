package query

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/expr"
)

// Limits are ADT's query limits (adt-api.md §3, §8).
const (
	MaxLength  = 8000 // characters in a query
	MaxLogical = 50   // AND and OR operators
	MaxInItems = 50   // items in one IN or NIN list
	MaxJoins   = 5
	MaxHops    = 10 // hops of a whole MATCH pattern, counting each edge's upper bound
)

// collection is one collection in scope: a twin variable or a relationship variable.
type collection struct {
	name string
	rel  bool
}

// link is a relationship step between two twin collections: from a to b (for Out), with
// rel naming the relationship collection (-1 for none).
type link struct {
	a, b     int
	dir      Direction
	names    []string
	min, max int
	rel      int
}

// plan is a checked query ready to run.
type plan struct {
	q     *Query
	colls []collection
	links []link
	// anchor is the twin collection whose ids the WHERE clause pins, with the ids; -1 when
	// none. For FROM RELATIONSHIPS, anchorSide says whether the ids are $sourceId or
	// $targetId.
	anchor     int
	anchorIDs  []string
	anchorSide string
	// model is the IS_OF_MODEL call the scan of a single twin collection can use; nil when
	// none applies.
	model *expr.Call
	// residual is the WHERE clause less the conjunct the model index answers; nil when
	// nothing is left to evaluate.
	residual expr.Node
	// numeric are the conjuncts of residual that compare a top-level property of the only
	// twin collection with a number; a run answers them from the index's number columns.
	numeric []numericTest
	// items are the projections, resolved.
	items []item
}

// item is a resolved projection: the value of path in collection coll (the whole document
// when path is empty), written under key.
type item struct {
	coll int
	path []string
	key  string
}

// check validates q against the limits and rules of the language and plans it.
func check(q *Query) (*plan, error) {
	pl := &plan{q: q, anchor: -1}
	if err := pl.scope(); err != nil {
		return nil, err
	}
	multi := len(pl.colls) > 1
	switch {
	case q.Select.Star && multi:
		return nil, expr.Errorf(q.From.At, "SELECT * is not supported with JOIN or MATCH over several collections: select the collections by alias, for example SELECT %s", pl.aliasList())
	case q.Select.Star, q.Select.Count:
	default:
		for _, p := range q.Select.Items {
			it, err := pl.resolve(p.Path)
			if err != nil {
				return nil, err
			}
			it.key = p.As
			switch {
			case it.key != "":
			case len(it.path) == 0:
				it.key = pl.colls[it.coll].name
			default:
				it.key = it.path[len(it.path)-1]
			}
			if slices.ContainsFunc(pl.items, func(o item) bool { return o.key == it.key }) {
				return nil, expr.Errorf(p.Path.At, "the result already has a value named '%s'; name this one with AS", it.key)
			}
			pl.items = append(pl.items, it)
		}
	}
	if q.Where != nil {
		if err := pl.checkWhere(); err != nil {
			return nil, err
		}
	}
	pl.findAnchor()
	pl.residual = q.Where
	if pl.anchor < 0 && pl.model != nil {
		pl.residual = without(q.Where, pl.model)
	}
	pl.findNumeric()
	if (len(q.From.Joins) > 0 || q.From.Match != nil) && pl.anchor < 0 {
		what := "JOIN"
		if q.From.Match != nil {
			what = "MATCH"
		}
		return nil, expr.Errorf(q.From.At, "a query with %s must filter a twin by $dtId in WHERE, for example WHERE %s.$dtId = 'id' (or IN [...])", what, pl.colls[0].name)
	}
	return pl, nil
}

func (pl *plan) aliasList() string {
	var names []string
	for _, c := range pl.colls {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// scope declares the collections of the FROM clause and the links between them.
func (pl *plan) scope() error {
	f := pl.q.From
	declare := func(at expr.Pos, name string, rel bool) (int, error) {
		if name != "" && pl.index(name) >= 0 {
			return 0, expr.Errorf(at, "alias '%s' is declared twice", name)
		}
		pl.colls = append(pl.colls, collection{name: name, rel: rel})
		return len(pl.colls) - 1, nil
	}
	if f.Relationships {
		if len(f.Joins) > 0 || f.Match != nil {
			return expr.Errorf(f.At, "FROM RELATIONSHIPS cannot be combined with JOIN or MATCH")
		}
		_, err := declare(f.At, f.Alias, true)
		return err
	}
	if f.Match != nil {
		if len(f.Joins) > 0 {
			return expr.Errorf(f.Match.At, "JOIN and MATCH cannot be combined in one query")
		}
		return pl.scopeMatch()
	}
	if len(f.Joins) > MaxJoins {
		return expr.Errorf(f.Joins[MaxJoins].At, "the query has %d JOINs; at most %d are allowed", len(f.Joins), MaxJoins)
	}
	if len(f.Joins) > 0 && f.Alias == "" {
		return expr.Errorf(f.At, "a query with JOIN must name its collection: FROM DIGITALTWINS <alias>")
	}
	if _, err := declare(f.At, f.Alias, false); err != nil {
		return err
	}
	for _, j := range f.Joins {
		src := pl.index(j.Source)
		if src < 0 || pl.colls[src].rel {
			return expr.Errorf(j.At, "JOIN %s RELATED %s.%s: '%s' is not a twin collection declared before it", j.Alias, j.Source, j.Name, j.Source)
		}
		b, err := declare(j.At, j.Alias, false)
		if err != nil {
			return err
		}
		l := link{a: src, b: b, dir: Out, names: []string{j.Name}, min: 1, max: 1, rel: -1}
		if j.RelAlias != "" {
			if l.rel, err = declare(j.At, j.RelAlias, true); err != nil {
				return err
			}
		}
		pl.links = append(pl.links, l)
	}
	return nil
}

func (pl *plan) scopeMatch() error {
	m := pl.q.From.Match
	hops := 0
	node := func(n Node) int {
		if i := pl.index(n.Var); i >= 0 {
			return i
		}
		pl.colls = append(pl.colls, collection{name: n.Var})
		return len(pl.colls) - 1
	}
	prev := node(m.Nodes[0])
	for i, e := range m.Edges {
		if pl.colls[prev].rel {
			return expr.Errorf(m.Nodes[i].At, "'%s' names a relationship; it cannot be a MATCH node", m.Nodes[i].Var)
		}
		if e.Var != "" && e.Hops && !(e.MinHops == 1 && e.MaxHops == 1) {
			return expr.Errorf(e.At, "relationship variable '%s' needs a single-hop condition; it cannot have a hop count", e.Var)
		}
		hops += e.MaxHops
		if hops > MaxHops {
			return expr.Errorf(e.At, "the MATCH pattern has more than %d hops", MaxHops)
		}
		l := link{a: prev, dir: e.Dir, names: e.Names, min: e.MinHops, max: e.MaxHops, rel: -1}
		if e.Var != "" {
			if pl.index(e.Var) >= 0 {
				return expr.Errorf(e.At, "alias '%s' is declared twice", e.Var)
			}
			pl.colls = append(pl.colls, collection{name: e.Var, rel: true})
			l.rel = len(pl.colls) - 1
		}
		next := m.Nodes[i+1]
		if j := pl.index(next.Var); j >= 0 && pl.colls[j].rel {
			return expr.Errorf(next.At, "'%s' names a relationship; it cannot be a MATCH node", next.Var)
		}
		l.b = node(next)
		pl.links = append(pl.links, l)
		prev = l.b
	}
	if a := pl.q.From.Alias; a != "" && pl.index(a) < 0 {
		return expr.Errorf(pl.q.From.At, "alias '%s' does not appear in the MATCH pattern", a)
	}
	return nil
}

// index returns the collection named name, or -1.
func (pl *plan) index(name string) int {
	for i, c := range pl.colls {
		if c.name == name {
			return i
		}
	}
	return -1
}

// resolve splits a path into its collection and the path inside it. With one collection in
// scope, a path that does not start with its alias is inside it.
func (pl *plan) resolve(p *expr.Path) (item, error) {
	if i := pl.index(p.Names[0]); i >= 0 {
		return item{coll: i, path: p.Names[1:]}, nil
	}
	if len(pl.colls) == 1 {
		return item{coll: 0, path: p.Names}, nil
	}
	return item{}, expr.Errorf(p.At, "'%s' is not a collection in scope; use one of %s", p.Names[0], pl.aliasList())
}

// checkWhere checks the WHERE clause: limits, paths and functions.
func (pl *plan) checkWhere() error {
	logical := 0
	var err error
	// Walk goes on to a node's siblings when its visit returns false, so once err is set
	// every later visit returns at once, keeping the first error.
	expr.Walk(pl.q.Where, func(n expr.Node) bool {
		if err != nil {
			return false
		}
		switch n := n.(type) {
		case *expr.Logical:
			if logical++; logical > MaxLogical {
				err = expr.Errorf(n.At, "the query has more than %d AND/OR operators", MaxLogical)
			}
		case *expr.In:
			if len(n.List) > MaxInItems {
				err = expr.Errorf(n.At, "an IN list has %d items; at most %d are allowed", len(n.List), MaxInItems)
			}
		case *expr.Path:
			_, err = pl.resolve(n)
		case *expr.Call:
			if n.Name == "IS_OF_MODEL" {
				_, err = pl.modelArgs(n)
				return false
			}
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	return expr.Check(pl.q.Where, pl.funcs(nil))
}

// modelCall is a checked IS_OF_MODEL call.
type modelCall struct {
	coll  int
	model dtdl.DTMI
	id    string
	exact bool
}

// modelArgs checks the arguments of IS_OF_MODEL([collection,] 'dtmi' [, exact]).
func (pl *plan) modelArgs(c *expr.Call) (modelCall, error) {
	mc := modelCall{coll: -1}
	args := c.Args
	if len(args) > 0 {
		if p, ok := args[0].(*expr.Path); ok && len(p.Names) == 1 {
			if mc.coll = pl.index(p.Names[0]); mc.coll < 0 {
				return mc, expr.Errorf(p.At, "IS_OF_MODEL: '%s' is not a collection in scope", p.Names[0])
			}
			args = args[1:]
		}
	}
	if len(args) == 0 || len(args) > 2 {
		return mc, expr.Errorf(c.At, "IS_OF_MODEL takes ([collection,] 'model id' [, exact])")
	}
	lit, ok := args[0].(*expr.Literal)
	if ok {
		mc.id, ok = lit.Value.(string)
	}
	if !ok {
		return mc, expr.Errorf(args[0].Pos(), "IS_OF_MODEL: the model id must be a string literal")
	}
	var err error
	if mc.model, err = dtdl.ParseDTMI(mc.id); err != nil {
		return mc, expr.Errorf(args[0].Pos(), "IS_OF_MODEL: '%s' is not a valid model id", mc.id)
	}
	if len(args) == 2 {
		p, ok := args[1].(*expr.Path)
		if !ok || len(p.Names) != 1 || !strings.EqualFold(p.Names[0], "exact") {
			return mc, expr.Errorf(args[1].Pos(), "IS_OF_MODEL: the third argument can only be 'exact'")
		}
		mc.exact = true
	}
	if mc.coll < 0 {
		if len(pl.colls) > 1 {
			return mc, expr.Errorf(c.At, "IS_OF_MODEL needs a collection argument when several collections are in scope: IS_OF_MODEL(%s, '%s')", pl.colls[0].name, mc.id)
		}
		mc.coll = 0
	}
	if pl.colls[mc.coll].rel {
		return mc, expr.Errorf(c.At, "IS_OF_MODEL applies to twins; '%s' is a relationship collection", pl.colls[mc.coll].name)
	}
	return mc, nil
}

// conjuncts returns the operands of the top-level AND chain of n.
func conjuncts(n expr.Node) []expr.Node {
	if l, ok := n.(*expr.Logical); ok && l.Op == "AND" {
		return append(conjuncts(l.L), conjuncts(l.R)...)
	}
	if n == nil {
		return nil
	}
	return []expr.Node{n}
}

// numericTest is "property op number" on the only twin collection.
type numericTest struct {
	node expr.Node
	name string
	op   string
	num  float64
}

// flipped turns "a op b" into "b op' a".
var flipped = map[string]string{"=": "=", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}

// findNumeric collects the numeric tests among the residual's top-level conjuncts.
func (pl *plan) findNumeric() {
	if len(pl.colls) != 1 || pl.colls[0].rel || pl.anchor >= 0 {
		return
	}
	for _, c := range conjuncts(pl.residual) {
		cmp, ok := c.(*expr.Compare)
		if !ok {
			continue
		}
		path, pok := cmp.L.(*expr.Path)
		lit, lok := cmp.R.(*expr.Literal)
		op := cmp.Op
		if !pok || !lok {
			path, pok = cmp.R.(*expr.Path)
			lit, lok = cmp.L.(*expr.Literal)
			op = flipped[op]
		}
		if !pok || !lok {
			continue
		}
		num, isNum := lit.Value.(float64)
		it, err := pl.resolve(path)
		if isNum && err == nil && len(it.path) == 1 {
			pl.numeric = append(pl.numeric, numericTest{node: c, name: it.path[0], op: op, num: num})
		}
	}
}

// without returns the AND chain n less its conjunct c (nil when nothing remains).
func without(n, c expr.Node) expr.Node {
	var rest expr.Node
	for _, x := range conjuncts(n) {
		switch {
		case x == c:
		case rest == nil:
			rest = x
		default:
			rest = &expr.Logical{At: x.Pos(), Op: "AND", L: rest, R: x}
		}
	}
	return rest
}

// findAnchor looks for a top-level conjunct pinning a twin collection's $dtId (or, for FROM
// RELATIONSHIPS, $sourceId or $targetId) to literal strings, and for an IS_OF_MODEL call on
// the only twin collection.
func (pl *plan) findAnchor() {
	for _, c := range conjuncts(pl.q.Where) {
		coll, field, ids := pl.pinned(c)
		if ids == nil {
			if call, ok := c.(*expr.Call); ok && call.Name == "IS_OF_MODEL" && len(pl.colls) == 1 && pl.model == nil {
				pl.model = call
			}
			continue
		}
		rel := pl.colls[coll].rel
		if pl.anchor < 0 && (!rel && field == "$dtId" || rel && (field == "$sourceId" || field == "$targetId")) {
			pl.anchor, pl.anchorIDs, pl.anchorSide = coll, ids, field
		}
	}
}

// pinned recognises "path = 'id'", "'id' = path" and "path IN ['id', ...]".
func (pl *plan) pinned(n expr.Node) (coll int, field string, ids []string) {
	var path *expr.Path
	var lits []*expr.Literal
	switch n := n.(type) {
	case *expr.Compare:
		if n.Op != "=" {
			return 0, "", nil
		}
		p, lok := n.L.(*expr.Path)
		l, rok := n.R.(*expr.Literal)
		if !lok || !rok {
			p, lok = n.R.(*expr.Path)
			l, rok = n.L.(*expr.Literal)
		}
		if !lok || !rok {
			return 0, "", nil
		}
		path, lits = p, []*expr.Literal{l}
	case *expr.In:
		p, ok := n.X.(*expr.Path)
		if !ok || n.Not {
			return 0, "", nil
		}
		path, lits = p, n.List
	default:
		return 0, "", nil
	}
	it, err := pl.resolve(path)
	if err != nil || len(it.path) != 1 {
		return 0, "", nil
	}
	ids = []string{}
	for _, l := range lits {
		if s, ok := l.Value.(string); ok {
			ids = append(ids, s)
		}
	}
	return it.coll, it.path[0], ids
}

// String describes the plan, for tests and logs.
func (pl *plan) String() string {
	var b strings.Builder
	switch {
	case pl.anchor >= 0:
		fmt.Fprintf(&b, "anchor %s in %q", expr.FormatPath(slices.DeleteFunc([]string{pl.colls[pl.anchor].name, pl.anchorSide}, func(s string) bool { return s == "" })), pl.anchorIDs)
	case pl.model != nil:
		fmt.Fprintf(&b, "model index %s", pl.model)
	default:
		b.WriteString("scan")
	}
	for _, l := range pl.links {
		fmt.Fprintf(&b, "; (%s) %v%v*%d..%d (%s)", pl.colls[l.a].name, l.dir, l.names, l.min, l.max, pl.colls[l.b].name)
	}
	return b.String()
}
