package dtdl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DTMI is a parsed Digital Twin Model Identifier such as "dtmi:com:example:Thermostat;1".
//
// Two DTMIs name versions of the same model when their Path is equal; Version then orders them.
// The query language uses that for IS_OF_MODEL(..., exact) and "same id, version >=" checks.
type DTMI struct {
	// Path is the identifier without the "dtmi:" scheme and without the version suffix, e.g.
	// "com:example:Thermostat".
	Path string
	// Segments are the colon-separated segments of Path.
	Segments []string
	// Version is the major version (the number after ';'); 0 when the DTMI has no version.
	Version int
	// Minor is the minor version (DTDL v3 allows ";1.2"); 0 when absent.
	Minor int
}

// String returns the DTMI in its canonical text form.
func (d DTMI) String() string {
	s := "dtmi:" + d.Path
	if d.Version > 0 {
		s += ";" + strconv.Itoa(d.Version)
		if d.Minor > 0 {
			s += "." + strconv.Itoa(d.Minor)
		}
	}
	return s
}

// maxDTMILength is the maximum length of any DTMI in DTDL.
const maxDTMILength = 2048

// ParseDTMI parses s as a DTMI of the syntax DTDL v3 accepts for model identifiers: "dtmi:",
// one or more colon-separated segments that each start with a letter, contain only letters,
// digits and underscores and do not end with an underscore, then optionally ";" and a version
// of 1 to 9 digits (no leading zero), optionally followed by "." and a minor version of 1 to 6
// digits. It fails on anything else, including DTMIs longer than 2048 characters.
func ParseDTMI(s string) (DTMI, error) {
	if len(s) > maxDTMILength {
		return DTMI{}, fmt.Errorf("parse DTMI %q: longer than %d characters", s, maxDTMILength)
	}
	if !isDTMI(s, false) {
		return DTMI{}, fmt.Errorf("parse DTMI %q: %w", s, errDTMISyntax)
	}
	path, ver, _ := strings.Cut(s[len("dtmi:"):], ";")
	d := DTMI{Path: path, Segments: strings.Split(path, ":")}
	if ver != "" {
		major, minor, _ := strings.Cut(ver, ".")
		d.Version, _ = strconv.Atoi(major)
		if minor != "" {
			d.Minor, _ = strconv.Atoi(minor)
		}
	}
	return d, nil
}

var errDTMISyntax = errors.New("not a DTMI: expected dtmi:<segment>[:<segment>...][;<version>] with segments of letters, digits and underscores starting with a letter")

// isDTMI reports whether s has DTMI syntax. system allows segments that start with an
// underscore (as in identifiers the specification assigns, "..:_contents:__name;1").
func isDTMI(s string, system bool) bool {
	if !strings.HasPrefix(s, "dtmi:") || len(s) > maxDTMILength {
		return false
	}
	rest := s[len("dtmi:"):]
	path, ver, hasVer := strings.Cut(rest, ";")
	if path == "" {
		return false
	}
	for seg := range strings.SplitSeq(path, ":") {
		if !isDTMISegment(seg, system) {
			return false
		}
	}
	if !hasVer {
		return true
	}
	major, minor, hasMinor := strings.Cut(ver, ".")
	if !isVersionNumber(major, 9) {
		return false
	}
	return !hasMinor || isVersionNumber(minor, 6)
}

func isDTMISegment(seg string, system bool) bool {
	if seg == "" {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9':
			if i == 0 {
				return false
			}
		case c == '_':
			if i == len(seg)-1 || (i == 0 && !system) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func isVersionNumber(s string, maxDigits int) bool {
	if s == "" || len(s) > maxDigits || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkModelID reports what is wrong with s as the @id of an element in a DTDL version v
// document, or "" when nothing is.
func checkModelID(s string, v int) string {
	if !isDTMI(s, false) {
		if v == 2 {
			return "must be a DTMI with a version (dtmi:<segments>;<version>, DTDL v2)"
		}
		return "must be a DTMI (dtmi:<segments>[;<version>[.<minor>]], DTDL v3)"
	}
	_, ver, hasVer := strings.Cut(s, ";")
	if v == 2 && (!hasVer || strings.Contains(ver, ".")) {
		return "must be a DTMI with a major version and no minor version (DTDL v2)"
	}
	for _, p := range []string{"dtmi:dtdl:", "dtmi:standard:"} {
		if strings.HasPrefix(s, p) {
			return fmt.Sprintf("must not start with the reserved prefix %q", p)
		}
	}
	return ""
}
