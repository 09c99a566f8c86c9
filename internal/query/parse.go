package query

import (
	"strconv"

	"github.com/twinflow/twinflow/internal/expr"
)

// Query is a parsed query.
type Query struct {
	// Text is the query as sent.
	Text   string
	Select Select
	From   From
	// Where is the filter; nil when the query has none.
	Where expr.Node
}

// Select is the SELECT clause: exactly one of Star, Count or Items, optionally with Top.
type Select struct {
	Star  bool
	Count bool
	// Top is n of TOP(n); 0 when absent.
	Top   int
	Items []Projection
}

// Projection is one selected item: a collection alias or a path, optionally named with AS.
type Projection struct {
	Path *expr.Path
	As   string
}

// From is the FROM clause.
type From struct {
	At expr.Pos
	// Relationships is true for FROM RELATIONSHIPS, false for FROM DIGITALTWINS.
	Relationships bool
	// Alias names the collection; empty when absent.
	Alias string
	Joins []Join
	// Match is the MATCH pattern; nil when absent.
	Match *Pattern
}

// Join is "JOIN Alias RELATED Source.Name [RelAlias]".
type Join struct {
	At       expr.Pos
	Alias    string
	Source   string
	Name     string
	RelAlias string
}

// Pattern is a MATCH chain: Nodes[i] and Nodes[i+1] are linked by Edges[i].
type Pattern struct {
	At    expr.Pos
	Nodes []Node
	Edges []Edge
}

// Node is a twin variable in a MATCH pattern.
type Node struct {
	At  expr.Pos
	Var string
}

// Direction is the direction of a MATCH edge.
type Direction uint8

// The edge directions.
const (
	Out Direction = iota // (a)-[]->(b)
	In                   // (a)<-[]-(b)
	Any                  // (a)-[]-(b)
)

// String returns the arrow of the direction: "->", "<-" or "-".
func (d Direction) String() string {
	return [...]string{"->", "<-", "-"}[d]
}

// Edge is a MATCH relationship condition: [Var][:Names...][*hops].
type Edge struct {
	At  expr.Pos
	Dir Direction
	// Var names the relationship; empty when absent.
	Var string
	// Names are the accepted relationship names; empty accepts any.
	Names []string
	// MinHops and MaxHops are the accepted path lengths, both inclusive (the query's lower
	// bound of a range is exclusive, so *1..3 is MinHops 2, MaxHops 3).
	MinHops, MaxHops int
	// Hops is true when the query wrote a hop count.
	Hops bool
}

// parser reads the query grammar on top of expr's parser:
//
//	query      := SELECT [TOP '(' int ')'] selection FROM from [WHERE expr] EOF
//	selection  := '*' | COUNT '(' ')' | projection {',' projection} | (nothing, after TOP)
//	projection := path [AS name]
//	from       := DIGITALTWINS [alias] {JOIN alias RELATED alias '.' name [alias]} [MATCH pattern]
//	            | RELATIONSHIPS [alias]
//	pattern    := '(' name ')' {edge '(' name ')'}
//	edge       := '-' '[' cond ']' '-' ['>'] | '<' '-' '[' cond ']' '-'
//	cond       := [name] [':' name {'|' name}] ['*' (int | [int] '..' int)]
type parser struct {
	*expr.Parser
}

func parse(text string) (*Query, error) {
	toks, err := expr.Lex(text)
	if err != nil {
		return nil, err
	}
	p := parser{expr.NewParser(toks)}
	q := &Query{Text: text}
	if _, err := p.Keyword("SELECT"); err != nil {
		return nil, err
	}
	if q.Select, err = p.selection(); err != nil {
		return nil, err
	}
	if _, err := p.Keyword("FROM"); err != nil {
		return nil, err
	}
	if q.From, err = p.from(); err != nil {
		return nil, err
	}
	if p.Peek().Is("WHERE") {
		p.Next()
		if q.Where, err = p.Expr(); err != nil {
			return nil, err
		}
	}
	if t := p.Peek(); t.Kind != expr.EOF {
		return nil, p.Unexpected(t, "<EOF>")
	}
	return q, nil
}

func (p parser) selection() (Select, error) {
	var s Select
	if p.Peek().Is("TOP") {
		p.Next()
		if _, err := p.Punct("("); err != nil {
			return s, err
		}
		t := p.Next()
		n, err := strconv.Atoi(t.Text)
		if t.Kind != expr.Number || err != nil || n < 1 {
			return s, expr.Errorf(t.Pos, "TOP takes a positive integer, got '%s'", t)
		}
		s.Top = n
		if _, err := p.Punct(")"); err != nil {
			return s, err
		}
		if p.Peek().Is("FROM") {
			s.Star = true
			return s, nil
		}
	}
	switch t := p.Peek(); {
	case t.IsPunct("*"):
		p.Next()
		s.Star = true
		return s, nil
	case t.Is("COUNT") && p.PeekN(1).IsPunct("("):
		if s.Top > 0 {
			return s, expr.Errorf(t.Pos, "TOP cannot be combined with COUNT()")
		}
		p.Next()
		p.Next()
		if _, err := p.Punct(")"); err != nil {
			return s, err
		}
		s.Count = true
		return s, nil
	}
	for {
		path, err := p.Path()
		if err != nil {
			return s, err
		}
		item := Projection{Path: path}
		if p.Peek().Is("AS") {
			p.Next()
			name, err := p.Name()
			if err != nil {
				return s, err
			}
			item.As = name.Text
		}
		s.Items = append(s.Items, item)
		if !p.Peek().IsPunct(",") {
			return s, nil
		}
		p.Next()
	}
}

// isAlias reports whether t can be a collection alias here: a name that is not one of the
// clause words that may follow.
func isAlias(t expr.Token) bool {
	return expr.IsName(t) && !(t.Kind == expr.Ident && (t.Is("JOIN") || t.Is("MATCH") || t.Is("RELATED")))
}

func (p parser) from() (From, error) {
	t := p.Next()
	f := From{At: t.Pos}
	switch {
	case t.Is("DIGITALTWINS"):
	case t.Is("RELATIONSHIPS"):
		f.Relationships = true
	default:
		return f, p.Unexpected(t, "{DIGITALTWINS, RELATIONSHIPS}")
	}
	if isAlias(p.Peek()) {
		f.Alias = p.Next().Text
	}
	for p.Peek().Is("JOIN") {
		j, err := p.join()
		if err != nil {
			return f, err
		}
		f.Joins = append(f.Joins, j)
	}
	if p.Peek().Is("MATCH") {
		m, err := p.pattern()
		if err != nil {
			return f, err
		}
		f.Match = m
	}
	return f, nil
}

func (p parser) join() (Join, error) {
	j := Join{At: p.Next().Pos}
	alias, err := p.alias()
	if err != nil {
		return j, err
	}
	j.Alias = alias.Text
	if _, err := p.Keyword("RELATED"); err != nil {
		return j, err
	}
	src, err := p.alias()
	if err != nil {
		return j, err
	}
	j.Source = src.Text
	if _, err := p.Punct("."); err != nil {
		return j, err
	}
	name, err := p.relName()
	if err != nil {
		return j, err
	}
	j.Name = name.Text
	if isAlias(p.Peek()) {
		j.RelAlias = p.Next().Text
	}
	return j, nil
}

func (p parser) alias() (expr.Token, error) {
	t := p.Peek()
	if !isAlias(t) {
		return t, p.Unexpected(t, "an alias")
	}
	return p.Next(), nil
}

// relName reads a relationship name, which may be any identifier, reserved or not.
func (p parser) relName() (expr.Token, error) {
	t := p.Peek()
	if t.Kind != expr.Ident && t.Kind != expr.Quoted {
		return t, p.Unexpected(t, "a relationship name")
	}
	return p.Next(), nil
}

func (p parser) pattern() (*Pattern, error) {
	m := &Pattern{At: p.Next().Pos}
	n, err := p.node()
	if err != nil {
		return nil, err
	}
	m.Nodes = append(m.Nodes, n)
	for t := p.Peek(); t.IsPunct("-") || t.IsPunct("<"); t = p.Peek() {
		e, err := p.edge()
		if err != nil {
			return nil, err
		}
		n, err := p.node()
		if err != nil {
			return nil, err
		}
		m.Edges = append(m.Edges, e)
		m.Nodes = append(m.Nodes, n)
	}
	return m, nil
}

func (p parser) node() (Node, error) {
	open, err := p.Punct("(")
	if err != nil {
		return Node{}, err
	}
	name, err := p.alias()
	if err != nil {
		return Node{}, err
	}
	if _, err := p.Punct(")"); err != nil {
		return Node{}, err
	}
	return Node{At: open.Pos, Var: name.Text}, nil
}

func (p parser) edge() (Edge, error) {
	start := p.Next()
	e := Edge{At: start.Pos, Dir: Any, MinHops: 1, MaxHops: 1}
	if start.IsPunct("<") {
		e.Dir = In
		if _, err := p.Punct("-"); err != nil {
			return e, err
		}
	}
	if _, err := p.Punct("["); err != nil {
		return e, err
	}
	if isAlias(p.Peek()) {
		e.Var = p.Next().Text
	}
	if p.Peek().IsPunct(":") {
		p.Next()
		for {
			name, err := p.relName()
			if err != nil {
				return e, err
			}
			e.Names = append(e.Names, name.Text)
			if !p.Peek().IsPunct("|") {
				break
			}
			p.Next()
		}
	}
	if p.Peek().IsPunct("*") {
		if err := p.hops(&e); err != nil {
			return e, err
		}
	}
	if _, err := p.Punct("]"); err != nil {
		return e, err
	}
	if _, err := p.Punct("-"); err != nil {
		return e, err
	}
	if p.Peek().IsPunct(">") {
		gt := p.Next()
		if e.Dir == In {
			return e, expr.Errorf(gt.Pos, "a MATCH edge cannot point both ways: use -[...]- for any direction")
		}
		e.Dir = Out
	}
	return e, nil
}

// hops reads "*n", "*min..max" or "*..max". The lower bound of a range is exclusive.
func (p parser) hops(e *Edge) error {
	star := p.Next()
	e.Hops = true
	num := func() (int, error) {
		t := p.Next()
		n, err := strconv.Atoi(t.Text)
		if t.Kind != expr.Number || err != nil {
			return 0, p.Unexpected(t, "a hop count")
		}
		return n, nil
	}
	lo := 0
	if !p.Peek().IsPunct("..") {
		n, err := num()
		if err != nil {
			return err
		}
		if !p.Peek().IsPunct("..") {
			if n < 1 {
				return expr.Errorf(star.Pos, "a hop count must be at least 1, got %d", n)
			}
			e.MinHops, e.MaxHops = n, n
			return nil
		}
		lo = n
	}
	p.Next() // ..
	hi, err := num()
	if err != nil {
		return err
	}
	if hi <= lo {
		return expr.Errorf(star.Pos, "hop range *%d..%d is empty: the lower bound is excluded", lo, hi)
	}
	e.MinHops, e.MaxHops = lo+1, hi
	return nil
}
