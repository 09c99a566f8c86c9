package expr

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the lexical class of a Token.
type Kind uint8

// The token kinds.
const (
	EOF    Kind = iota
	Ident       // a name or keyword: letters, digits, '_' and '$', not starting with a digit
	Quoted      // an escaped identifier written [[...]]; never a keyword
	String      // a single-quoted string literal; Text holds the decoded value
	Number      // a decimal number literal
	Punct       // an operator or punctuation mark; Text holds it
)

// Pos is a position in the source text: Line counts from 1, Col from 0 in runes, as ADT's
// query errors report them ("Line=1, Position=0").
type Pos struct {
	Line, Col int
}

// Token is one lexical token.
type Token struct {
	Kind Kind
	// Text is the identifier, the decoded string, the number as written or the punctuation.
	Text string
	// Raw is the token as written in the source.
	Raw string
	Pos Pos
}

// Is reports whether t is the keyword kw (an unescaped identifier equal to kw ignoring case).
func (t Token) Is(kw string) bool {
	return t.Kind == Ident && strings.EqualFold(t.Text, kw)
}

// IsPunct reports whether t is the punctuation p.
func (t Token) IsPunct(p string) bool {
	return t.Kind == Punct && t.Text == p
}

// String returns the token as errors quote it: its source text, or <EOF>.
func (t Token) String() string {
	if t.Kind == EOF {
		return "<EOF>"
	}
	return t.Raw
}

// puncts are the operators and punctuation marks, longest first.
var puncts = [...]string{"!=", "<>", "<=", ">=", "..", "(", ")", "[", "]", ",", ".", "*", "=", "<", ">", "-", ":", "|"}

// Lex splits src into tokens, ending with an EOF token. It fails with a *SyntaxError at the
// first character that starts no token, at an unterminated string or escaped identifier, and at
// an unknown escape sequence.
func Lex(src string) ([]Token, error) {
	l := lexer{src: src, line: 1}
	var toks []Token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.Kind == EOF {
			return toks, nil
		}
	}
}

type lexer struct {
	src  string
	off  int
	line int
	col  int
}

func (l *lexer) pos() Pos { return Pos{Line: l.line, Col: l.col} }

// advance moves past n bytes, keeping line and column current.
func (l *lexer) advance(n int) {
	for end := l.off + n; l.off < end; {
		r, size := utf8.DecodeRuneInString(l.src[l.off:])
		l.off += size
		if r == '\n' {
			l.line++
			l.col = 0
		} else {
			l.col++
		}
	}
}

func (l *lexer) next() (Token, error) {
	for l.off < len(l.src) && isSpace(l.src[l.off]) {
		l.advance(1)
	}
	start, pos := l.off, l.pos()
	if l.off == len(l.src) {
		return Token{Kind: EOF, Pos: pos}, nil
	}
	c := l.src[l.off]
	tok := func(k Kind, text string) Token {
		return Token{Kind: k, Text: text, Raw: l.src[start:l.off], Pos: pos}
	}
	switch {
	case isIdentStart(c):
		n := 1
		for l.off+n < len(l.src) && isIdentPart(l.src[l.off+n]) {
			n++
		}
		l.advance(n)
		return tok(Ident, l.src[start:l.off]), nil
	case c >= '0' && c <= '9':
		l.advance(numberLen(l.src[l.off:]))
		return tok(Number, l.src[start:l.off]), nil
	case c == '\'':
		s, n, err := unquote(l.src[l.off:])
		if err != nil {
			return Token{}, &SyntaxError{Pos: pos, Msg: err.Error()}
		}
		l.advance(n)
		return tok(String, s), nil
	case strings.HasPrefix(l.src[l.off:], "[["):
		end := strings.Index(l.src[l.off+2:], "]]")
		if end < 0 {
			return Token{}, &SyntaxError{Pos: pos, Msg: "token recognition error at: '" + l.src[l.off:] + "'"}
		}
		name := l.src[l.off+2 : l.off+2+end]
		l.advance(end + 4)
		if name == "" {
			return Token{}, &SyntaxError{Pos: pos, Msg: "empty escaped identifier '[[]]'"}
		}
		return tok(Quoted, name), nil
	}
	for _, p := range puncts {
		if strings.HasPrefix(l.src[l.off:], p) {
			l.advance(len(p))
			return tok(Punct, p), nil
		}
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	return Token{}, &SyntaxError{Pos: pos, Msg: "token recognition error at: '" + string(r) + "'"}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// numberLen returns the length of the decimal number at the start of s: digits, an optional
// fraction (a '.' followed by a digit, so "1..3" is 1, "..", 3) and an optional exponent.
func numberLen(s string) int {
	digits := func(i int) int {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i
	}
	i := digits(0)
	if i+1 < len(s) && s[i] == '.' && s[i+1] >= '0' && s[i+1] <= '9' {
		i = digits(i + 1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && s[j] >= '0' && s[j] <= '9' {
			i = digits(j)
		}
	}
	return i
}

// unquote decodes the single-quoted string at the start of s and returns it with the number
// of bytes it takes. Escapes: \' \" \\ \/ \b \f \n \r \t and \uXXXX.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch c {
		case '\'':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 >= len(s) {
				return "", 0, fmt.Errorf("token recognition error at: '%s'", s)
			}
			switch e := s[i+1]; e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+6 > len(s) {
					return "", 0, fmt.Errorf("invalid escape sequence '%s' in string", s[i:])
				}
				v, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
				if err != nil {
					return "", 0, fmt.Errorf("invalid escape sequence '%s' in string", s[i:i+6])
				}
				b.WriteRune(rune(v))
				i += 6
				continue
			default:
				return "", 0, fmt.Errorf("invalid escape sequence '\\%c' in string", e)
			}
			i += 2
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, fmt.Errorf("token recognition error at: '%s'", s)
}
