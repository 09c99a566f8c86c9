package expr

import (
	"strconv"
	"strings"
)

// Node is an expression. Nodes are immutable once parsed; String prints the canonical form,
// fully parenthesised, that the parser reads back to an equal tree.
type Node interface {
	Pos() Pos
	String() string
}

// Literal is a constant: nil (null), bool, float64 or string.
type Literal struct {
	At    Pos
	Value any
}

// Path is a dotted name such as T.$metadata.$model. Names are case sensitive; the caller's
// Env decides what they refer to.
type Path struct {
	At    Pos
	Names []string
}

// Not is logical negation.
type Not struct {
	At Pos
	X  Node
}

// Logical is AND or OR (Op is "AND" or "OR").
type Logical struct {
	At   Pos
	Op   string
	L, R Node
}

// Compare is a comparison; Op is one of = != < > <= >= ("<>" is read as "!=").
type Compare struct {
	At   Pos
	Op   string
	L, R Node
}

// In tests membership of X in a list of literals; Not makes it NIN.
type In struct {
	At   Pos
	X    Node
	Not  bool
	List []*Literal
}

// Call is a function call. Name is upper-cased; function names are not case sensitive.
type Call struct {
	At   Pos
	Name string
	Args []Node
}

func (n *Literal) Pos() Pos { return n.At }
func (n *Path) Pos() Pos    { return n.At }
func (n *Not) Pos() Pos     { return n.At }
func (n *Logical) Pos() Pos { return n.At }
func (n *Compare) Pos() Pos { return n.At }
func (n *In) Pos() Pos      { return n.At }
func (n *Call) Pos() Pos    { return n.At }

func (n *Literal) String() string { return FormatLiteral(n.Value) }
func (n *Path) String() string    { return FormatPath(n.Names) }
func (n *Not) String() string     { return "(NOT " + n.X.String() + ")" }
func (n *Logical) String() string { return "(" + n.L.String() + " " + n.Op + " " + n.R.String() + ")" }
func (n *Compare) String() string { return "(" + n.L.String() + " " + n.Op + " " + n.R.String() + ")" }

func (n *In) String() string {
	op := " IN ["
	if n.Not {
		op = " NIN ["
	}
	items := make([]string, len(n.List))
	for i, l := range n.List {
		items[i] = l.String()
	}
	return "(" + n.X.String() + op + strings.Join(items, ", ") + "])"
}

func (n *Call) String() string {
	args := make([]string, len(n.Args))
	for i, a := range n.Args {
		args[i] = a.String()
	}
	return n.Name + "(" + strings.Join(args, ", ") + ")"
}

// FormatLiteral writes a literal value back in the grammar's syntax.
func FormatLiteral(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return "?"
}

// FormatPath writes a path back in the grammar's syntax, escaping names that need it.
func FormatPath(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = formatName(n)
	}
	return strings.Join(parts, ".")
}

func formatName(n string) string {
	if n == "" || !isIdentStart(n[0]) || Reserved(n) {
		return "[[" + n + "]]"
	}
	for i := 1; i < len(n); i++ {
		if !isIdentPart(n[i]) {
			return "[[" + n + "]]"
		}
	}
	return n
}

// reserved are the words ADT reserves; they must be written [[escaped]] to be used as names.
var reserved = map[string]bool{
	"ALL": true, "AND": true, "AS": true, "ASC": true, "AVG": true, "BY": true, "COUNT": true,
	"DESC": true, "DEVICES_JOBS": true, "DEVICES_MODULES": true, "DEVICES": true,
	"ENDS_WITH": true, "FALSE": true, "FROM": true, "GROUP": true, "IN": true, "IS_BOOL": true,
	"IS_DEFINED": true, "IS_NULL": true, "IS_NUMBER": true, "IS_OBJECT": true,
	"IS_PRIMITIVE": true, "IS_STRING": true, "MAX": true, "MIN": true, "NOT": true,
	"NOT_IN": true, "NULL": true, "OR": true, "ORDER": true, "SELECT": true, "STARTS_WITH": true,
	"SUM": true, "TOP": true, "TRUE": true, "WHERE": true, "IS_OF_MODEL": true, "NIN": true,
}

// Reserved reports whether name is a reserved word (ignoring case), which an unescaped
// identifier cannot be.
func Reserved(name string) bool {
	return reserved[strings.ToUpper(name)]
}
