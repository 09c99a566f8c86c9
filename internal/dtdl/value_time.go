package dtdl

import "strings"

// The temporal schemas are checked by hand-written scanners rather than time.Parse: they follow
// the RFC 3339 and ISO 8601 grammars exactly, and allocate nothing.
//
// They follow the DTDL reference parser (DTDLParser's instance validation), which narrows RFC
// 3339 in ways that keep every stored value readable by .NET and Go date parsers:
//   - "T" and "Z" are upper case only (RFC 3339 also allows "t" and "z").
//   - A second of 60 (a leap second) is refused, as .NET and Go's time package refuse it.
//   - dateTime requires the offset ("Z" or ±hh:mm).
//
// time is wider than the reference parser, which requires the offset: it accepts RFC 3339
// partial-time as well as full-time, so "08:30:00" is a time.

// isDate reports whether s is an RFC 3339 full-date (yyyy-mm-dd) naming a real calendar day.
func isDate(s string) bool {
	_, ok := scanDate(s)
	return ok && len(s) == 10
}

// scanDate scans a full-date at the start of s and returns the number of bytes it used.
func scanDate(s string) (int, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return 0, false
	}
	return 10, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// isTime reports whether s is an RFC 3339 partial-time (hh:mm:ss[.frac]) or full-time (the same
// followed by "Z" or a ±hh:mm offset).
func isTime(s string) bool {
	n, ok := scanPartialTime(s)
	if !ok {
		return false
	}
	return n == len(s) || isOffset(s[n:])
}

// isDateTime reports whether s is an RFC 3339 date-time: full-date "T" full-time, with the
// offset required.
func isDateTime(s string) bool {
	n, ok := scanDate(s)
	if !ok || n >= len(s) || s[n] != 'T' {
		return false
	}
	s = s[n+1:]
	n, ok = scanPartialTime(s)
	return ok && isOffset(s[n:])
}

// scanPartialTime scans hh:mm:ss with an optional fraction at the start of s.
func scanPartialTime(s string) (int, bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, false
	}
	h, ok1 := digits(s[0:2])
	m, ok2 := digits(s[3:5])
	sec, ok3 := digits(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 {
		return 0, false
	}
	n := 8
	if n < len(s) && s[n] == '.' {
		n++
		start := n
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == start {
			return 0, false
		}
	}
	return n, true
}

// isOffset reports whether s is exactly an RFC 3339 time-offset: "Z" or ±hh:mm.
func isOffset(s string) bool {
	if s == "Z" {
		return true
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return false
	}
	h, ok1 := digits(s[1:3])
	m, ok2 := digits(s[4:6])
	return ok1 && ok2 && h <= 23 && m <= 59
}

// digits parses s, which must be all ASCII digits.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// isDuration reports whether s is an ISO 8601 duration in the designator format, as the DTDL
// reference parser's pattern defines it: "P", then years and months or weeks, then days, then
// optionally "T" and hours, minutes and seconds: P[nY][nM][nD][T[nH][nM][nS]] or
// P[nW][nD][T[nH][nM][nS]]. Components appear in that order, at most once each; at least one is
// present, and at least one follows a "T". n is one or more digits; only the last component
// may have a decimal fraction, written with ".". No sign is accepted.
func isDuration(s string) bool {
	if len(s) < 3 || s[0] != 'P' {
		return false
	}
	s = s[1:]
	const dateDesignators, timeDesignators = "YMWD", "HMS"
	inTime := false
	order := dateDesignators
	next := 0 // index into order of the first designator still allowed
	components, timeComponents := 0, 0
	fraction := false // a component with a fraction was seen: it must be the last
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return false
			}
			inTime, order, next = true, timeDesignators, 0
			s = s[1:]
			continue
		}
		if fraction {
			return false
		}
		n := 0
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == 0 {
			return false
		}
		if n < len(s) && s[n] == '.' {
			n++
			start := n
			for n < len(s) && isDigit(s[n]) {
				n++
			}
			if n == start {
				return false
			}
			fraction = true
		}
		if n == len(s) {
			return false // a number without a designator
		}
		d := s[n]
		i := strings.IndexByte(order[next:], d)
		if i < 0 {
			return false
		}
		if !inTime && d == 'W' && next > 0 {
			return false // weeks do not combine with years or months
		}
		next += i + 1
		components++
		if inTime {
			timeComponents++
		}
		s = s[n+1:]
	}
	return components > 0 && (!inTime || timeComponents > 0)
}
