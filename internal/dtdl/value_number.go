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
	numNotIntegral          // a number with a fractional part, for integer or long
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
// A number is integral when its value is a whole number, whatever its notation: "12", "12.0",
// "1.2e1" and "-0" are all integral; "1.5" and "1e-1" are not. The check is exact (decimal, not
// through float64), so "9223372036854775807" is a long and "9223372036854775808" is not. Go
// float64 and int values are accepted too, for callers that build values in code.
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

// parseIntegral parses the JSON number text s as a whole number of the given bit size.
func parseIntegral(s string, bits int) (int64, numClass) {
	if !isJSONNumber(s) {
		return 0, numNotNumber
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err == nil {
		return n, numOK
	}
	if !strings.ContainsAny(s, ".eE") {
		// Plain integer syntax that ParseInt refused: it can only be out of range.
		return 0, numOutOfRange
	}
	// Decimal or exponent notation: reduce to significant digits times a power of ten.
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	mant, exp := s, 0
	if e := strings.IndexAny(s, "eE"); e >= 0 {
		mant = s[:e]
		x, err := strconv.Atoi(s[e+1:])
		if err != nil {
			// The exponent's magnitude does not even fit an int: the value is zero only
			// if every digit is zero, otherwise it is non-integral or out of range.
			if strings.Trim(mant, "0.") == "" {
				return 0, numOK
			}
			if s[e+1] == '-' {
				return 0, numNotIntegral
			}
			return 0, numOutOfRange
		}
		exp = x
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	switch {
	case digits == "":
		return 0, numOK
	case exp < 0:
		return 0, numNotIntegral
	case len(digits)+exp > 19:
		return 0, numOutOfRange
	}
	text := digits + strings.Repeat("0", exp)
	if neg {
		text = "-" + text
	}
	n, err = strconv.ParseInt(text, 10, bits)
	if err != nil {
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
