package twin

import (
	"errors"
	"regexp"
	"testing"
)

func TestNewETag(t *testing.T) {
	re := regexp.MustCompile(`^W/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$`)
	a, b := NewETag(), NewETag()
	if !re.MatchString(a) || !re.MatchString(b) {
		t.Fatalf("NewETag() = %s, %s; want W/\"<uuid>\"", a, b)
	}
	if a == b {
		t.Fatalf("NewETag returned %s twice", a)
	}
}

func TestParseIfMatch(t *testing.T) {
	const cur = `W/"abc"`
	tests := []struct {
		header      string
		conditional bool
		matches     bool
		invalid     bool
	}{
		{header: "", conditional: false, matches: true},
		{header: "  ", conditional: false, matches: true},
		{header: "*", conditional: true, matches: true},
		{header: `W/"abc"`, conditional: true, matches: true},
		{header: `"abc"`, conditional: true, matches: true},
		{header: `W/"abd"`, conditional: true, matches: false},
		{header: `W/"x", W/"abc"`, conditional: true, matches: true},
		{header: `"x","y"`, conditional: true, matches: false},
		{header: `"a,b"`, conditional: true, matches: false},
		{header: "XXX", invalid: true},
		{header: `W/abc`, invalid: true},
		{header: `"abc`, invalid: true},
		{header: `"abc" "def"`, invalid: true},
		{header: `"abc",`, invalid: true},
		{header: `*, "abc"`, invalid: true},
	}
	for _, tt := range tests {
		c, err := ParseIfMatch(tt.header)
		if tt.invalid {
			var te *Error
			if !errors.As(err, &te) || te.Kind != KindInvalidArgument || te.Message != invalidIfMatch {
				t.Errorf("ParseIfMatch(%q) error = %v; want InvalidArgument %q", tt.header, err, invalidIfMatch)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseIfMatch(%q): %v", tt.header, err)
			continue
		}
		if c.Conditional() != tt.conditional || c.Matches(cur) != tt.matches {
			t.Errorf("ParseIfMatch(%q): conditional %v matches %v; want %v %v", tt.header, c.Conditional(), c.Matches(cur), tt.conditional, tt.matches)
		}
	}
}

func TestParseIfNoneMatch(t *testing.T) {
	tests := []struct {
		header  string
		want    bool
		invalid bool
	}{
		{"", false, false},
		{"*", true, false},
		{` * `, true, false},
		{`W/"abc"`, false, true},
		{"xyz", false, true},
	}
	for _, tt := range tests {
		got, err := ParseIfNoneMatch(tt.header)
		var te *Error
		if tt.invalid != (errors.As(err, &te) && te.Kind == KindInvalidArgument) || got != tt.want {
			t.Errorf("ParseIfNoneMatch(%q) = %v, %v; want %v, invalid %v", tt.header, got, err, tt.want, tt.invalid)
		}
	}
}
