package twin

import (
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// NewETag returns a fresh weak entity tag, W/"<uuid>", as ADT issues them.
func NewETag() string {
	const prefix = `W/"`
	var b [len(prefix) + 36 + 1]byte
	copy(b[:], prefix)
	u := uuid.New()
	// Written in place: uuid.NewString and a concatenation would allocate twice.
	hex.Encode(b[3:11], u[0:4])
	b[11] = '-'
	hex.Encode(b[12:16], u[4:6])
	b[16] = '-'
	hex.Encode(b[17:21], u[6:8])
	b[21] = '-'
	hex.Encode(b[22:26], u[8:10])
	b[26] = '-'
	hex.Encode(b[27:39], u[10:16])
	b[39] = '"'
	return string(b[:])
}

const invalidIfMatch = "Invalid If-Match header value. Allowed value(s): If-Match: {etag} or If-Match: *"

// Condition is a parsed If-Match header. The zero Condition (no header) matches every entity.
type Condition struct {
	any   bool
	etags []string // opaque tags, without the W/ prefix, quotes kept
}

// Conditional reports whether the header restricted the write at all.
func (c Condition) Conditional() bool {
	return c.any || len(c.etags) > 0
}

// Matches reports whether an entity whose current tag is etag satisfies the condition. Tags
// compare weakly (RFC 9110 §8.8.3.2): W/"x" matches "x". "*" matches any existing entity.
func (c Condition) Matches(etag string) bool {
	if !c.Conditional() || c.any {
		return true
	}
	opaque := strings.TrimPrefix(etag, "W/")
	for _, t := range c.etags {
		if t == opaque {
			return true
		}
	}
	return false
}

// ParseIfMatch parses an If-Match header: empty (no condition), "*", or a comma-separated list
// of quoted entity tags, weak or strong. Anything else is InvalidArgument with ADT's message.
func ParseIfMatch(h string) (Condition, error) {
	h = strings.TrimSpace(h)
	switch h {
	case "":
		return Condition{}, nil
	case "*":
		return Condition{any: true}, nil
	}
	var c Condition
	for rest := h; ; {
		rest = strings.TrimLeft(rest, " \t")
		tag, after, ok := cutETag(rest)
		if !ok {
			return Condition{}, InvalidArgument(invalidIfMatch)
		}
		c.etags = append(c.etags, tag)
		after = strings.TrimLeft(after, " \t")
		if after == "" {
			return c, nil
		}
		if after[0] != ',' {
			return Condition{}, InvalidArgument(invalidIfMatch)
		}
		rest = after[1:]
	}
}

// cutETag cuts one entity tag (W/"x" or "x") off the front of s and returns its opaque part
// with quotes.
func cutETag(s string) (tag, rest string, ok bool) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	return s[:end+2], s[end+2:], true
}

// ParseIfNoneMatch parses the If-None-Match header of a PUT: empty (no condition) or "*" (the
// entity must not exist yet). Any other value is InvalidArgument.
func ParseIfNoneMatch(h string) (mustNotExist bool, err error) {
	switch strings.TrimSpace(h) {
	case "":
		return false, nil
	case "*":
		return true, nil
	}
	return false, InvalidArgument("Invalid If-None-Match header value. Allowed value(s): If-None-Match: *")
}
