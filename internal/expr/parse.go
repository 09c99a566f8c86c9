package expr

import (
	"fmt"
	"strconv"
	"strings"
)

// SyntaxError is a lexical, syntactic or semantic error at a position in the source.
type SyntaxError struct {
	Pos Pos
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, position %d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
}

// Errorf returns a *SyntaxError at pos.
func Errorf(pos Pos, format string, args ...any) error {
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses src as one expression.
func Parse(src string) (Node, error) {
	toks, err := Lex(src)
	if err != nil {
		return nil, err
	}
	p := NewParser(toks)
	n, err := p.Expr()
	if err != nil {
		return nil, err
	}
	if t := p.Peek(); t.Kind != EOF {
		return nil, p.Unexpected(t, "<EOF>")
	}
	return n, nil
}

// Parser is a recursive-descent parser over a token slice. Languages that embed expressions
// (the query language) drive it token by token and call Expr, Path or Name where an
// expression, a path or a name belongs.
//
// Expression grammar, lowest precedence first (keywords are not case sensitive):
//
//	expr    := and {OR and}
//	and     := not {AND not}
//	not     := NOT not | compare
//	compare := operand [('=' | '!=' | '<>' | '<' | '>' | '<=' | '>=') operand
//	                   | (IN | NIN | NOT IN) '[' literal {',' literal} ']']
//	operand := literal | path | name '(' [expr {',' expr}] ')' | '(' expr ')'
//	literal := 'string' | ['-'] number | TRUE | FALSE | NULL
//	path    := name {'.' name}
//	name    := identifier that is not reserved | [[escaped]]
type Parser struct {
	toks []Token
	i    int
}

// NewParser returns a parser over toks, which must end with an EOF token (as Lex returns).
func NewParser(toks []Token) *Parser { return &Parser{toks: toks} }

// Peek returns the next token without consuming it.
func (p *Parser) Peek() Token { return p.PeekN(0) }

// PeekN returns the token n places after the next one (EOF past the end).
func (p *Parser) PeekN(n int) Token {
	if p.i+n >= len(p.toks) {
		return p.toks[len(p.toks)-1]
	}
	return p.toks[p.i+n]
}

// Next consumes and returns the next token.
func (p *Parser) Next() Token {
	t := p.Peek()
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

// Unexpected returns the error for token t where the grammar expects something else.
func (p *Parser) Unexpected(t Token, expecting string) error {
	return Errorf(t.Pos, "mismatched input '%s' expecting %s", t, expecting)
}

// Punct consumes the punctuation s or fails.
func (p *Parser) Punct(s string) (Token, error) {
	t := p.Peek()
	if !t.IsPunct(s) {
		return t, p.Unexpected(t, "'"+s+"'")
	}
	return p.Next(), nil
}

// Keyword consumes the keyword kw or fails with ANTLR's "missing KW at 'x'".
func (p *Parser) Keyword(kw string) (Token, error) {
	t := p.Peek()
	if !t.Is(kw) {
		return t, Errorf(t.Pos, "missing %s at '%s'", kw, t)
	}
	return p.Next(), nil
}

// IsName reports whether t can be a name: an escaped identifier, or an identifier that is not
// a reserved word.
func IsName(t Token) bool {
	return t.Kind == Quoted || t.Kind == Ident && !Reserved(t.Text)
}

// Name consumes a name and returns its token.
func (p *Parser) Name() (Token, error) {
	t := p.Peek()
	if !IsName(t) {
		return t, p.Unexpected(t, "an identifier")
	}
	return p.Next(), nil
}

// Path consumes a dotted path.
func (p *Parser) Path() (*Path, error) {
	first, err := p.Name()
	if err != nil {
		return nil, err
	}
	path := &Path{At: first.Pos, Names: []string{first.Text}}
	for p.Peek().IsPunct(".") {
		p.Next()
		t := p.Peek()
		// After a dot any identifier is a member name, reserved or not (T.count).
		if t.Kind != Ident && t.Kind != Quoted {
			return nil, p.Unexpected(t, "an identifier")
		}
		path.Names = append(path.Names, p.Next().Text)
	}
	return path, nil
}

// Expr parses an expression.
func (p *Parser) Expr() (Node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.Peek().Is("OR") {
		op := p.Next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &Logical{At: op.Pos, Op: "OR", L: l, R: r}
	}
	return l, nil
}

func (p *Parser) and() (Node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.Peek().Is("AND") {
		op := p.Next()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &Logical{At: op.Pos, Op: "AND", L: l, R: r}
	}
	return l, nil
}

func (p *Parser) not() (Node, error) {
	if t := p.Peek(); t.Is("NOT") {
		p.Next()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &Not{At: t.Pos, X: x}, nil
	}
	return p.compare()
}

var compareOps = map[string]string{"=": "=", "!=": "!=", "<>": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}

func (p *Parser) compare() (Node, error) {
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	t := p.Peek()
	if op, ok := compareOps[t.Text]; ok && t.Kind == Punct {
		p.Next()
		r, err := p.operand()
		if err != nil {
			return nil, err
		}
		return &Compare{At: t.Pos, Op: op, L: l, R: r}, nil
	}
	switch {
	case t.Is("IN"), t.Is("NIN"):
		p.Next()
		return p.list(t.Pos, l, t.Is("NIN"))
	case t.Is("NOT") && p.PeekN(1).Is("IN"):
		p.Next()
		p.Next()
		return p.list(t.Pos, l, true)
	}
	return l, nil
}

func (p *Parser) list(at Pos, x Node, not bool) (Node, error) {
	if _, err := p.Punct("["); err != nil {
		return nil, err
	}
	in := &In{At: at, X: x, Not: not}
	for {
		lit, err := p.literal()
		if err != nil {
			return nil, err
		}
		in.List = append(in.List, lit)
		t := p.Next()
		if t.IsPunct("]") {
			return in, nil
		}
		if !t.IsPunct(",") {
			return nil, p.Unexpected(t, "{',', ']'}")
		}
	}
}

// isLiteralStart reports whether t starts a literal.
func isLiteralStart(t Token) bool {
	return t.Kind == String || t.Kind == Number || t.IsPunct("-") || t.Is("TRUE") || t.Is("FALSE") || t.Is("NULL")
}

func (p *Parser) literal() (*Literal, error) {
	t := p.Peek()
	switch {
	case t.Kind == String:
		p.Next()
		return &Literal{At: t.Pos, Value: t.Text}, nil
	case t.Kind == Number:
		p.Next()
		return number(t, false)
	case t.IsPunct("-") && p.PeekN(1).Kind == Number:
		p.Next()
		return number(p.Next(), true)
	case t.Is("TRUE"), t.Is("FALSE"):
		p.Next()
		return &Literal{At: t.Pos, Value: t.Is("TRUE")}, nil
	case t.Is("NULL"):
		p.Next()
		return &Literal{At: t.Pos}, nil
	}
	return nil, p.Unexpected(t, "a literal")
}

func number(t Token, neg bool) (*Literal, error) {
	v, err := strconv.ParseFloat(t.Text, 64)
	if err != nil {
		return nil, Errorf(t.Pos, "number '%s' is out of range", t.Text)
	}
	if neg {
		v = -v
	}
	return &Literal{At: t.Pos, Value: v}, nil
}

func (p *Parser) operand() (Node, error) {
	t := p.Peek()
	switch {
	case isLiteralStart(t):
		return p.literal()
	case t.IsPunct("("):
		p.Next()
		x, err := p.Expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.Punct(")"); err != nil {
			return nil, err
		}
		return x, nil
	case t.Kind == Ident && p.PeekN(1).IsPunct("("):
		return p.call()
	case IsName(t):
		return p.Path()
	}
	return nil, p.Unexpected(t, "an expression")
}

func (p *Parser) call() (Node, error) {
	name := p.Next()
	p.Next() // (
	c := &Call{At: name.Pos, Name: strings.ToUpper(name.Text)}
	if p.Peek().IsPunct(")") {
		p.Next()
		return c, nil
	}
	for {
		a, err := p.Expr()
		if err != nil {
			return nil, err
		}
		c.Args = append(c.Args, a)
		t := p.Next()
		if t.IsPunct(")") {
			return c, nil
		}
		if !t.IsPunct(",") {
			return nil, p.Unexpected(t, "{',', ')'}")
		}
	}
}
