package dtdl

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// numClass classifies a value checked against a numeric schema.
type numClass uint8

const (
	numOK          numClass = iota
	numNotNumber            // not a JSON number at all
	numNotIntegral          // for integer or long: a number not in integer notation
	numOutOfRange           // a number outside the schema's range
)

// isJSONNumber reports whether s follows the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// A json.Number from a Decoder always does; one built by hand need not, and strconv
// accepts forms (Inf, NaN, hex, leading '+', leading zeros) that JSON does not.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// integralValue returns v as a signed integer of the given bit size (32 or 64).
//
// A JSON number must be written in integer notation: digits with an optional minus sign, no
// fraction and no exponent, so "12" is an integer and "12.0", "1.2e1" and "1.5" are not. This
// is the DTDL reference parser's rule (it validates instances with .NET int.TryParse and
// long.TryParse on the raw text), and it keeps stored values readable by typed clients: a .NET
// SDK reading "12.0" into an int fails. Go float64 values, which have no notation, are accepted
// when whole (encoding/json writes them back in integer notation), as are int and int64, for
// callers that build values in code.
func integralValue(v any, bits int) (int64, numClass) {
	switch n := v.(type) {
	case json.Number:
		return parseIntegral(string(n), bits)
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, numOutOfRange
		}
		if n != math.Trunc(n) {
			return 0, numNotIntegral
		}
		// 2^(bits-1) is exact in float64; values below it fit once truncated.
		limit := math.Ldexp(1, bits-1)
		if n < -limit || n >= limit {
			return 0, numOutOfRange
		}
		return int64(n), numOK
	case int:
		return checkIntRange(int64(n), bits)
	case int64:
		return checkIntRange(n, bits)
	}
	return 0, numNotNumber
}

func checkIntRange(n int64, bits int) (int64, numClass) {
	if bits == 32 && (n < math.MinInt32 || n > math.MaxInt32) {
		return 0, numOutOfRange
	}
	return n, numOK
}

// parseIntegral parses the JSON number text s as an integer of the given bit size, written in
// integer notation.
func parseIntegral(s string, bits int) (int64, numClass) {
	if !isJSONNumber(s) {
		return 0, numNotNumber
	}
	if strings.ContainsAny(s, ".eE") {
		return 0, numNotIntegral
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		// The grammar is checked, so the only possible error is ErrRange.
		return 0, numOutOfRange
	}
	return n, numOK
}

// floatClass checks v against double (bits 64) or float (bits 32): a finite number within the
// range of the IEEE 754 format. Numbers too small to represent round to zero and are accepted,
// as IEEE 754 and xsd:double/xsd:float define; only overflow is an error.
func floatClass(v any, bits int) numClass {
	switch n := v.(type) {
	case json.Number:
		if !isJSONNumber(string(n)) {
			return numNotNumber
		}
		// The grammar is checked, so the only possible error is ErrRange on overflow.
		if _, err := strconv.ParseFloat(string(n), bits); err != nil {
			return numOutOfRange
		}
		return numOK
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return numOutOfRange
		}
		if bits == 32 && math.IsInf(float64(float32(n)), 0) {
			return numOutOfRange
		}
		return numOK
	case int, int64:
		return numOK
	}
	return numNotNumber
}

// numberFloat returns v as a float64 if it is a finite JSON number (or Go number).
func numberFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		if !isJSONNumber(string(n)) {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}
