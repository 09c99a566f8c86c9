package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/expr"
	"github.com/twinflow/twinflow/internal/graph"
)

// Error is a query the language refuses: a syntax error, a limit or a rule. Its message has
// ADT's form, including the line and 0-based position of the offending token.
type Error struct {
	Pos expr.Pos
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("SQL query parse failed: SQL Parser Error, Line=%d, Position=%d, Message=%s See samples in https://aka.ms/adtv2query for the correct syntax.", e.Pos.Line, e.Pos.Col, e.Msg)
}

// Prepared is a parsed and checked query, ready to run any number of times, concurrently.
type Prepared struct {
	plan *plan
}

// Prepare parses and checks text. Every refusal is an *Error.
func Prepare(text string) (*Prepared, error) {
	if n := len([]rune(text)); n > MaxLength {
		return nil, &Error{Pos: expr.Pos{Line: 1}, Msg: fmt.Sprintf("the query is %d characters long; at most %d are allowed", n, MaxLength)}
	}
	q, err := parse(text)
	var pl *plan
	if err == nil {
		pl, err = check(q)
	}
	if err != nil {
		var se *expr.SyntaxError
		if errors.As(err, &se) {
			return nil, &Error{Pos: se.Pos, Msg: se.Msg}
		}
		return nil, &Error{Pos: expr.Pos{Line: 1}, Msg: err.Error()}
	}
	return &Prepared{plan: pl}, nil
}

// Query returns the parsed query.
func (p *Prepared) Query() *Query { return p.plan.q }

// Plan describes how the query finds its candidates: "anchor ..." ($dtId, or for
// relationships $sourceId/$targetId, pinned to ids), "model index ..." (IS_OF_MODEL on the
// model index), or "scan", followed by the relationship steps.
func (p *Prepared) Plan() string { return p.plan.String() }

// Cursor is where a query's next page begins. The zero Cursor is the first page.
type Cursor struct {
	// Slot is the first candidate slot of the next page, for queries over one collection.
	Slot int
	// Skip is the number of rows the previous pages returned, for JOIN and MATCH queries.
	Skip int
	// Returned is the number of rows returned so far, for TOP.
	Returned int
}

// Page is one page of results.
type Page struct {
	// Rows are the result rows as JSON.
	Rows []json.RawMessage
	// Next is where the next page begins; nil on the last page.
	Next *Cursor
	// Examined is the number of candidate rows the WHERE clause was evaluated on (or, without
	// WHERE, that were produced): the work the page cost.
	Examined int
}

// Run returns the page of results at cur with at most pageSize rows. Rows come in index
// slot order for queries over one collection and in anchor, then relationship, order for
// JOIN and MATCH. COUNT() answers in one page. Run checks ctx every few thousand candidates
// and returns its error, wrapped, once it ends.
func (p *Prepared) Run(ctx context.Context, r *graph.Reader, cur Cursor, pageSize int) (Page, error) {
	ex := newExec(p.plan, r)
	pl := p.plan
	limit := pageSize
	if top := pl.q.Select.Top; top > 0 {
		limit = min(limit, top-cur.Returned)
		if limit <= 0 {
			return Page{}, nil
		}
	}
	var (
		page   Page
		count  int
		ctxErr error
	)
	// examine counts a candidate and reports whether the run must stop for ctx.
	examine := func() bool {
		page.Examined++
		if page.Examined%4096 == 0 {
			ctxErr = ctx.Err()
		}
		return ctxErr != nil
	}
	emit := func(pos Cursor) bool {
		if examine() {
			return false
		}
		if ex.residual != nil && !expr.Match(ex.residual, &ex.env, ex.fns) {
			return true
		}
		if pl.q.Select.Count {
			count++
			return true
		}
		if len(page.Rows) == limit {
			// One more row exists: the next page starts with it. A copy of pos, so that pos
			// itself stays off the heap: emit runs for every candidate.
			next := pos
			next.Returned = cur.Returned + limit
			page.Next = &next
			return false
		}
		page.Rows = append(page.Rows, ex.row())
		return true
	}
	switch {
	case len(pl.links) > 0:
		n := 0
		ex.eachPatternRow(func() bool {
			n++
			if n <= cur.Skip {
				return true
			}
			return emit(Cursor{Skip: n - 1})
		})
	case pl.colls[0].rel:
		ex.eachRel(cur.Slot, func(rel *graph.Rel) bool {
			ex.env.rels[0] = rel
			return emit(Cursor{Slot: rel.Slot()})
		})
	case pl.q.Select.Count && ex.countsByModel():
		// Every twin of the accepted models counts: their lists' lengths are the answer.
		count = ex.countModelLists(cur.Slot)
		page.Examined = count
	default:
		ex.eachTwin(cur.Slot, func(slot int) bool {
			// Number columns first: they decide most rows without touching the twin.
			if !ex.numbersMatch(slot) {
				return !examine()
			}
			ex.env.twins[0] = ex.r.TwinAt(slot)
			return emit(Cursor{Slot: slot})
		})
	}
	if ctxErr != nil {
		return Page{}, fmt.Errorf("run query after %d candidates: %w", page.Examined, ctxErr)
	}
	if pl.q.Select.Count {
		page.Rows = []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"COUNT":%d}`, count))}
		page.Next = nil
	}
	return page, nil
}

// exec is one run of a plan.
type exec struct {
	pl  *plan
	r   *graph.Reader
	fns expr.Funcs
	env rowEnv
	// residual is what remains of the WHERE clause to evaluate per row, after the model
	// index and the number columns.
	residual expr.Node
	// numbers are the numeric tests answered from number columns.
	numbers []columnTest
	// models holds, per IS_OF_MODEL call (keyed by its first argument), which model numbers
	// it accepts.
	models map[*expr.Node]modelMatch
}

type modelMatch struct {
	coll   int
	accept []bool
}

func newExec(pl *plan, r *graph.Reader) *exec {
	ex := &exec{pl: pl, r: r, models: map[*expr.Node]modelMatch{}}
	ex.env = rowEnv{ex: ex, twins: make([]*graph.Twin, len(pl.colls)), rels: make([]*graph.Rel, len(pl.colls))}
	ex.fns = pl.funcs(ex)
	ex.residual = pl.residual
	for _, nt := range pl.numeric {
		if col, ok := r.NumberColumn(nt.name); ok {
			ex.numbers = append(ex.numbers, columnTest{col: col, op: nt.op, num: nt.num})
			ex.residual = without(ex.residual, nt.node)
		}
	}
	if pl.q.Where != nil {
		expr.Walk(pl.q.Where, func(n expr.Node) bool {
			if c, ok := n.(*expr.Call); ok && c.Name == "IS_OF_MODEL" {
				mc, _ := pl.modelArgs(c) // checked by Prepare
				ex.models[&c.Args[0]] = modelMatch{coll: mc.coll, accept: acceptedModels(r, mc)}
			}
			return true
		})
	}
	return ex
}

// countsByModel reports whether the twins of the model index's lists are exactly the rows
// of the plan: one twin collection, no anchor, and nothing of the WHERE clause left to test
// beyond the IS_OF_MODEL conjunct the lists answer.
func (ex *exec) countsByModel() bool {
	pl := ex.pl
	return len(pl.colls) == 1 && !pl.colls[0].rel && len(pl.links) == 0 && pl.anchor < 0 && pl.model != nil &&
		ex.residual == nil && len(ex.numbers) == 0
}

// countModelLists returns the number of twins, from slot from on, in the model index's lists
// of the models the plan's IS_OF_MODEL accepts: what eachTwin would visit.
func (ex *exec) countModelLists(from int) int {
	n := 0
	for model, ok := range ex.models[&ex.pl.model.Args[0]].accept {
		if !ok {
			continue
		}
		l := ex.r.TwinsOfModel(model)
		i, _ := slices.BinarySearch(l, int32(from))
		n += len(l) - i
	}
	return n
}

// columnTest is a numericTest bound to its number column.
type columnTest struct {
	col []float64
	op  string
	num float64
}

// numbersMatch applies the column tests to the twin in slot. A NaN (missing, or not a
// number) fails every test, as comparing a missing value or different types does.
func (ex *exec) numbersMatch(slot int) bool {
	for _, t := range ex.numbers {
		if slot >= len(t.col) {
			return false
		}
		v := t.col[slot]
		var ok bool
		switch t.op {
		case "=":
			ok = v == t.num
		case "!=":
			ok = v != t.num && v == v
		case "<":
			ok = v < t.num
		case ">":
			ok = v > t.num
		case "<=":
			ok = v <= t.num
		case ">=":
			ok = v >= t.num
		}
		if !ok {
			return false
		}
	}
	return true
}

// acceptedModels evaluates IS_OF_MODEL's rule for every model number the index knows: the
// twin's model, or one it extends (unless exact), has the requested id with a version at
// least the requested one; with exact, the model must be the one requested.
func acceptedModels(r *graph.Reader, mc modelCall) []bool {
	set := r.Models()
	ids := r.ModelIDs()
	accept := make([]bool, len(ids))
	ok := func(id string) bool {
		d, err := dtdl.ParseDTMI(id)
		return err == nil && d.Path == mc.model.Path && d.Version >= mc.model.Version
	}
	for i, id := range ids {
		if mc.exact {
			accept[i] = id == mc.id
			continue
		}
		accept[i] = ok(id) || slices.ContainsFunc(set.Ancestors(id), ok)
	}
	return accept
}

// funcs returns the function table: the builtins and IS_OF_MODEL. ex is nil when the table
// is only used for checking.
func (pl *plan) funcs(ex *exec) expr.Funcs {
	fns := expr.Builtins()
	fns["IS_OF_MODEL"] = expr.Func{MinArgs: 1, MaxArgs: 3, Call: func(env expr.Env, _ expr.Funcs, args []expr.Node) (any, bool) {
		m := ex.models[&args[0]]
		t := ex.env.twins[m.coll]
		return t != nil && m.accept[t.Model()], true
	}}
	return fns
}

// rowEnv resolves paths against the current row's bindings.
type rowEnv struct {
	ex    *exec
	twins []*graph.Twin
	rels  []*graph.Rel
}

// Lookup implements expr.Env.
func (e *rowEnv) Lookup(path []string) (any, bool) {
	colls := e.ex.pl.colls
	if len(colls) == 1 && colls[0].name == "" && !colls[0].rel {
		return e.ex.r.LookupTwin(e.twins[0], path) // the common case: one unnamed collection
	}
	c := 0
	switch {
	case len(colls) > 1:
		c = e.ex.pl.index(path[0])
		path = path[1:]
	case colls[0].name != "" && path[0] == colls[0].name:
		path = path[1:]
	}
	if c < 0 {
		return nil, false
	}
	if colls[c].rel {
		rel := e.rels[c]
		if len(path) == 0 {
			return json.RawMessage(rel.Doc()), true
		}
		return e.ex.r.LookupRel(rel, path)
	}
	t := e.twins[c]
	if len(path) == 0 {
		return json.RawMessage(e.ex.r.Doc(t)), true
	}
	return e.ex.r.LookupTwin(t, path)
}

// row builds the current row's JSON.
func (ex *exec) row() json.RawMessage {
	pl := ex.pl
	if pl.q.Select.Star {
		if pl.colls[0].rel {
			return ex.env.rels[0].Doc()
		}
		return ex.r.Doc(ex.env.twins[0])
	}
	buf := []byte{'{'}
	for _, it := range pl.items {
		var v any
		var ok bool
		switch {
		case len(it.path) > 0:
			v, ok = ex.env.lookupIn(it.coll, it.path)
		case pl.colls[it.coll].rel:
			v, ok = json.RawMessage(ex.env.rels[it.coll].Doc()), true
		default:
			v, ok = json.RawMessage(ex.r.Doc(ex.env.twins[it.coll])), true
		}
		if !ok {
			continue
		}
		val, err := json.Marshal(v)
		if err != nil {
			continue
		}
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		key, _ := json.Marshal(it.key)
		buf = append(append(append(buf, key...), ':'), val...)
	}
	return append(buf, '}')
}

// lookupIn resolves path inside collection c.
func (e *rowEnv) lookupIn(c int, path []string) (any, bool) {
	if e.ex.pl.colls[c].rel {
		return e.ex.r.LookupRel(e.rels[c], path)
	}
	return e.ex.r.LookupTwin(e.twins[c], path)
}

// eachTwin calls fn with the slots of the candidate twins of a one-collection query, in
// order from slot from, until fn returns false.
func (ex *exec) eachTwin(from int, fn func(slot int) bool) {
	r, pl := ex.r, ex.pl
	switch {
	case pl.anchor >= 0:
		var ts []*graph.Twin
		for _, id := range pl.anchorIDs {
			if t, ok := r.Twin(id); ok && t.Slot() >= from && !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
		slices.SortFunc(ts, func(a, b *graph.Twin) int { return a.Slot() - b.Slot() })
		for _, t := range ts {
			if !fn(t.Slot()) {
				return
			}
		}
	case pl.model != nil:
		accept := ex.models[&pl.model.Args[0]].accept
		var lists [][]int32
		for n, ok := range accept {
			if l := r.TwinsOfModel(n); ok && len(l) > 0 {
				i, _ := slices.BinarySearch(l, int32(from))
				lists = append(lists, l[i:])
			}
		}
		if len(lists) == 1 {
			for _, slot := range lists[0] {
				if !fn(int(slot)) {
					return
				}
			}
			return
		}
		for {
			best := -1
			for i, l := range lists {
				if len(l) > 0 && (best < 0 || l[0] < lists[best][0]) {
					best = i
				}
			}
			if best < 0 {
				return
			}
			slot := lists[best][0]
			lists[best] = lists[best][1:]
			if !fn(int(slot)) {
				return
			}
		}
	default:
		for i := from; i < r.TwinSlots(); i++ {
			if r.TwinAt(i) != nil && !fn(i) {
				return
			}
		}
	}
}

// eachRel calls fn for the candidate relationships of a FROM RELATIONSHIPS query in slot
// order from slot from, until fn returns false.
func (ex *exec) eachRel(from int, fn func(*graph.Rel) bool) {
	r, pl := ex.r, ex.pl
	if pl.anchor < 0 {
		for i := from; i < r.RelSlots(); i++ {
			if rel := r.RelAt(i); rel != nil && !fn(rel) {
				return
			}
		}
		return
	}
	var rels []*graph.Rel
	for _, id := range pl.anchorIDs {
		t, ok := r.Twin(id)
		if !ok {
			continue
		}
		side := t.Out()
		if pl.anchorSide == "$targetId" {
			side = t.In()
		}
		for _, rel := range side {
			if rel.Slot() >= from && !slices.Contains(rels, rel) {
				rels = append(rels, rel)
			}
		}
	}
	slices.SortFunc(rels, func(a, b *graph.Rel) int { return a.Slot() - b.Slot() })
	for _, rel := range rels {
		if !fn(rel) {
			return
		}
	}
}

// step is a link oriented for traversal: from the bound collection to the other.
type step struct {
	link
	from, to int
	dir      Direction
}

// eachPatternRow binds every combination of the pattern's collections, starting from the
// anchored twins, and calls fn for each until it returns false.
func (ex *exec) eachPatternRow(fn func() bool) {
	pl := ex.pl
	// Order the links so that each starts from a collection bound before it. Patterns are
	// connected (check builds them so), so every pass binds at least one more link.
	bound := map[int]bool{pl.anchor: true}
	done := make([]bool, len(pl.links))
	var steps []step
	for progress := true; progress; {
		progress = false
		for i, l := range pl.links {
			switch {
			case done[i]:
				continue
			case bound[l.a]:
				steps = append(steps, step{link: l, from: l.a, to: l.b, dir: l.dir})
			case bound[l.b]:
				steps = append(steps, step{link: l, from: l.b, to: l.a, dir: reverse(l.dir)})
			default:
				continue
			}
			bound[l.a], bound[l.b], done[i], progress = true, true, true, true
		}
	}
	var seen []*graph.Twin
	for _, id := range pl.anchorIDs {
		t, ok := ex.r.Twin(id)
		if !ok || slices.Contains(seen, t) {
			continue
		}
		seen = append(seen, t)
		clear(ex.env.twins)
		ex.env.twins[pl.anchor] = t
		if !ex.walk(steps, fn) {
			return
		}
	}
}

func reverse(d Direction) Direction {
	switch d {
	case Out:
		return In
	case In:
		return Out
	}
	return Any
}

// walk binds steps[0] and recurses; it returns false when fn asked to stop.
func (ex *exec) walk(steps []step, fn func() bool) bool {
	if len(steps) == 0 {
		return fn()
	}
	s := steps[0]
	env := &ex.env
	from := env.twins[s.from]
	prev := env.twins[s.to]
	return ex.expand(from, s, func(to *graph.Twin, rel *graph.Rel) bool {
		if prev != nil && to != prev {
			return true // the collection is already bound (a cycle in the pattern)
		}
		env.twins[s.to] = to
		if s.rel >= 0 {
			env.rels[s.rel] = rel
		}
		more := ex.walk(steps[1:], fn)
		env.twins[s.to] = prev
		return more
	})
}

// expand calls fn for every twin reachable from t along s: over one relationship (passing
// it), or for hop ranges, every twin whose shortest distance along matching relationships
// is within the range, each once (rel is then nil).
func (ex *exec) expand(t *graph.Twin, s step, fn func(*graph.Twin, *graph.Rel) bool) bool {
	match := func(r *graph.Rel) bool { return len(s.names) == 0 || slices.Contains(s.names, r.Name()) }
	neighbours := func(t *graph.Twin, visit func(*graph.Twin, *graph.Rel) bool) bool {
		if s.dir != In {
			for _, r := range t.Out() {
				if match(r) && !visit(r.Target(), r) {
					return false
				}
			}
		}
		if s.dir != Out {
			for _, r := range t.In() {
				if match(r) && !visit(r.Source(), r) {
					return false
				}
			}
		}
		return true
	}
	if s.max == 1 {
		return neighbours(t, fn)
	}
	visited := map[*graph.Twin]bool{t: true}
	frontier := []*graph.Twin{t}
	for depth := 1; depth <= s.max && len(frontier) > 0; depth++ {
		var next []*graph.Twin
		for _, u := range frontier {
			ok := neighbours(u, func(v *graph.Twin, _ *graph.Rel) bool {
				if visited[v] {
					return true
				}
				visited[v] = true
				next = append(next, v)
				return depth < s.min || fn(v, nil)
			})
			if !ok {
				return false
			}
		}
		frontier = next
	}
	return true
}

// TwinDocuments reports whether the rows are whole twin documents (SELECT * over twins), so
// callers that present documents differently by API version can rewrite them.
func (p *Prepared) TwinDocuments() bool {
	return p.plan.q.Select.Star && !p.plan.colls[0].rel
}

// TwinColumns returns the keys under which each row holds a whole twin document (the
// projections of twin collections, as in SELECT T, R ...), so callers that present documents
// differently by API version can rewrite them; none for SELECT * (see TwinDocuments).
func (p *Prepared) TwinColumns() []string {
	var keys []string
	for _, it := range p.plan.items {
		if len(it.path) == 0 && !p.plan.colls[it.coll].rel {
			keys = append(keys, it.key)
		}
	}
	return keys
}
