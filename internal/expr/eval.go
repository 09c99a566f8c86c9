package expr

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Env resolves paths during evaluation. Lookup returns the value at path and whether it is
// defined. Values are JSON-like: nil, bool, float64, string, []any, map[string]any, or a
// json.RawMessage holding an object or array that the evaluator decodes only when it must.
type Env interface {
	Lookup(path []string) (any, bool)
}

// Func is a function callable from expressions. It receives its arguments unevaluated, so it
// can read names (a collection alias, a flag word) as well as values; Eval evaluates one.
// It returns the result and whether it is defined.
type Func struct {
	MinArgs, MaxArgs int
	Call             func(env Env, fns Funcs, args []Node) (any, bool)
}

// Funcs is a function table keyed by upper-case name.
type Funcs map[string]Func

// Check reports the first call in n to a function fns does not hold, or with a number of
// arguments outside its range, as a *SyntaxError.
func Check(n Node, fns Funcs) error {
	var err error
	Walk(n, func(x Node) bool {
		c, ok := x.(*Call)
		if !ok || err != nil {
			return err == nil
		}
		f, ok := fns[c.Name]
		switch {
		case !ok:
			err = Errorf(c.At, "unknown function '%s'", c.Name)
		case len(c.Args) < f.MinArgs || len(c.Args) > f.MaxArgs:
			err = Errorf(c.At, "function %s takes %s, got %d", c.Name, arity(f), len(c.Args))
		}
		return err == nil
	})
	return err
}

func arity(f Func) string {
	switch {
	case f.MinArgs == f.MaxArgs && f.MinArgs == 1:
		return "1 argument"
	case f.MinArgs == f.MaxArgs:
		return itoa(f.MinArgs) + " arguments"
	}
	return itoa(f.MinArgs) + " to " + itoa(f.MaxArgs) + " arguments"
}

func itoa(n int) string { return strconv.Itoa(n) }

// Walk calls fn for n and, while fn returns true, for each of its descendants in order.
func Walk(n Node, fn func(Node) bool) {
	if !fn(n) {
		return
	}
	switch n := n.(type) {
	case *Not:
		Walk(n.X, fn)
	case *Logical:
		Walk(n.L, fn)
		Walk(n.R, fn)
	case *Compare:
		Walk(n.L, fn)
		Walk(n.R, fn)
	case *In:
		Walk(n.X, fn)
		for _, l := range n.List {
			Walk(l, fn)
		}
	case *Call:
		for _, a := range n.Args {
			Walk(a, fn)
		}
	}
}

// Match reports whether n evaluates to true. An undefined result does not match.
func Match(n Node, env Env, fns Funcs) bool {
	v, ok := Eval(n, env, fns)
	return ok && v == true
}

// Eval evaluates n and reports whether its value is defined. Semantics, as ADT's:
//   - A path that does not resolve is undefined, and so is every comparison, IN and string
//     function applied to it: a missing property matches nothing, not even through NOT.
//   - Comparing values of different types is false (=, != and the orderings alike), except
//     that null compares equal only to null and unequal to every other defined value.
//     Booleans support only = and !=; objects and arrays compare false.
//   - AND is false when either side is false and true when both are true; OR is true when
//     either side is true and false when both are false; otherwise both are undefined.
//     NOT of an undefined value is undefined.
func Eval(n Node, env Env, fns Funcs) (any, bool) {
	switch n := n.(type) {
	case *Literal:
		return n.Value, true
	case *Path:
		return env.Lookup(n.Names)
	case *Not:
		v, ok := Eval(n.X, env, fns)
		b, isBool := v.(bool)
		if !ok || !isBool {
			return nil, false
		}
		return !b, true
	case *Logical:
		return logical(n, env, fns)
	case *Compare:
		l, ok := Eval(n.L, env, fns)
		if !ok {
			return nil, false
		}
		r, ok := Eval(n.R, env, fns)
		if !ok {
			return nil, false
		}
		return CompareValues(n.Op, l, r), true
	case *In:
		x, ok := Eval(n.X, env, fns)
		if !ok {
			return nil, false
		}
		for _, l := range n.List {
			if CompareValues("=", x, l.Value) {
				return !n.Not, true
			}
		}
		return n.Not, true
	case *Call:
		f, ok := fns[n.Name]
		if !ok {
			return nil, false
		}
		return f.Call(env, fns, n.Args)
	}
	return nil, false
}

func logical(n *Logical, env Env, fns Funcs) (any, bool) {
	l, lok := Eval(n.L, env, fns)
	lb, lIsBool := l.(bool)
	lok = lok && lIsBool
	// Short-circuit on the deciding value.
	if lok && lb == (n.Op == "OR") {
		return lb, true
	}
	r, rok := Eval(n.R, env, fns)
	rb, rIsBool := r.(bool)
	rok = rok && rIsBool
	switch {
	case rok && rb == (n.Op == "OR"):
		return rb, true
	case lok && rok:
		return rb, true
	}
	return nil, false
}

// Type is the JSON type of a value.
type Type uint8

// The JSON types.
const (
	TypeInvalid Type = iota
	TypeNull
	TypeBool
	TypeNumber
	TypeString
	TypeObject
	TypeArray
)

// TypeOf returns the JSON type of a value as Env returns them.
func TypeOf(v any) Type {
	switch v := v.(type) {
	case nil:
		return TypeNull
	case bool:
		return TypeBool
	case float64:
		return TypeNumber
	case string:
		return TypeString
	case map[string]any:
		return TypeObject
	case []any:
		return TypeArray
	case json.RawMessage:
		switch b := bytes.TrimLeft(v, " \t\r\n"); {
		case len(b) > 0 && b[0] == '{':
			return TypeObject
		case len(b) > 0 && b[0] == '[':
			return TypeArray
		}
	}
	return TypeInvalid
}

// CompareValues applies the comparison op (= != < > <= >=) to two defined values, by the
// rules Eval documents.
func CompareValues(op string, l, r any) bool {
	switch l := l.(type) {
	case float64:
		if r, ok := r.(float64); ok {
			return ordered(op, l, r)
		}
	case string:
		if r, ok := r.(string); ok {
			return ordered(op, l, r)
		}
	case bool:
		if r, ok := r.(bool); ok {
			switch op {
			case "=":
				return l == r
			case "!=":
				return l != r
			}
			return false
		}
	}
	if ln, rn := l == nil, r == nil; ln || rn {
		switch op {
		case "=":
			return ln && rn
		case "!=":
			return ln != rn
		}
	}
	return false
}

func ordered[T float64 | string](op string, l, r T) bool {
	switch op {
	case "=":
		return l == r
	case "!=":
		return l != r
	case "<":
		return l < r
	case ">":
		return l > r
	case "<=":
		return l <= r
	case ">=":
		return l >= r
	}
	return false
}

// Builtins returns a new table of the type-checking and string functions of ADT's query and
// route-filter languages: IS_DEFINED, IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT,
// IS_PRIMITIVE, STARTSWITH/STARTS_WITH, ENDSWITH/ENDS_WITH, CONTAINS and ARRAY_CONTAINS.
// Callers add their own functions to it.
func Builtins() Funcs {
	is := func(pred func(Type) bool) Func {
		return Func{MinArgs: 1, MaxArgs: 1, Call: func(env Env, fns Funcs, args []Node) (any, bool) {
			v, ok := Eval(args[0], env, fns)
			return ok && pred(TypeOf(v)), true
		}}
	}
	str := func(pred func(s, sub string) bool) Func {
		return Func{MinArgs: 2, MaxArgs: 2, Call: func(env Env, fns Funcs, args []Node) (any, bool) {
			s, ok1 := Eval(args[0], env, fns)
			sub, ok2 := Eval(args[1], env, fns)
			if !ok1 || !ok2 {
				return nil, false
			}
			ss, ok1 := s.(string)
			subs, ok2 := sub.(string)
			return ok1 && ok2 && pred(ss, subs), true
		}}
	}
	starts, ends := str(strings.HasPrefix), str(strings.HasSuffix)
	return Funcs{
		"IS_DEFINED": {MinArgs: 1, MaxArgs: 1, Call: func(env Env, fns Funcs, args []Node) (any, bool) {
			_, ok := Eval(args[0], env, fns)
			return ok, true
		}},
		"IS_NULL":      is(func(t Type) bool { return t == TypeNull }),
		"IS_BOOL":      is(func(t Type) bool { return t == TypeBool }),
		"IS_NUMBER":    is(func(t Type) bool { return t == TypeNumber }),
		"IS_STRING":    is(func(t Type) bool { return t == TypeString }),
		"IS_OBJECT":    is(func(t Type) bool { return t == TypeObject }),
		"IS_PRIMITIVE": is(func(t Type) bool { return t >= TypeNull && t <= TypeString }),
		"STARTSWITH":   starts,
		"STARTS_WITH":  starts,
		"ENDSWITH":     ends,
		"ENDS_WITH":    ends,
		"CONTAINS":     str(strings.Contains),
		"ARRAY_CONTAINS": {MinArgs: 2, MaxArgs: 2, Call: func(env Env, fns Funcs, args []Node) (any, bool) {
			arr, ok1 := Eval(args[0], env, fns)
			x, ok2 := Eval(args[1], env, fns)
			if !ok1 || !ok2 {
				return nil, false
			}
			for _, e := range asArray(arr) {
				if TypeOf(e) != TypeObject && TypeOf(e) != TypeArray && CompareValues("=", e, x) {
					return true, true
				}
			}
			return false, true
		}},
	}
}

// asArray returns v's elements when v is a JSON array, else nil.
func asArray(v any) []any {
	switch v := v.(type) {
	case []any:
		return v
	case json.RawMessage:
		var a []any
		if TypeOf(v) == TypeArray && json.Unmarshal(v, &a) == nil {
			return a
		}
	}
	return nil
}
