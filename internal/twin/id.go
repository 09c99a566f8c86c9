package twin

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDBytes is the longest id, in bytes of UTF-8, that CheckID accepts for any resource.
// ADT documents no limit; this one keeps ids well inside a request line, a log line and an
// index key, while resources with stricter rules (event route ids, endpoint, source and
// mapping names, job ids) check those on top.
const MaxIDBytes = 1024

// CheckID reports whether id can name a resource, and returns an error of the given kind
// saying why not, naming the resource as what ("twin", "relationship"). An id must be 1 to
// MaxIDBytes bytes of valid UTF-8 without control characters, and no "/"-separated segment
// of it may be "." or "..": a client, proxy or server that normalizes paths would change
// such an id on its way, so it is refused rather than stored as something its sender did
// not write.
func CheckID(kind Kind, what, id string) error {
	var problem string
	switch {
	case id == "":
		problem = "it is empty"
	case len(id) > MaxIDBytes:
		problem = fmt.Sprintf("it is %d bytes long, more than the limit of %d", len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		problem = "it is not valid UTF-8"
	case strings.ContainsFunc(id, unicode.IsControl):
		problem = "it holds a control character"
	case hasDotSegment(id):
		problem = `it holds a "." or ".." path segment`
	default:
		return nil
	}
	return &Error{Kind: kind, Message: fmt.Sprintf("The %s id %s is not valid: %s.", what, quoteID(id), problem)}
}

// hasDotSegment reports whether a "/"-separated segment of id is "." or "..".
func hasDotSegment(id string) bool {
	for seg := range strings.SplitSeq(id, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// quoteID quotes id for an error message, escaping what is not printable and cutting a
// long id short, so that the message itself stays printable and small.
func quoteID(id string) string {
	const show = 64
	if len(id) <= show {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprintf("%q...", id[:show])
}
