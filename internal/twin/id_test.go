package twin

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	for _, id := range []string{
		"room-1", "a", "Room 101", "ünïcödé-€", "a/b", "a%2Fb", "..a", "a..", "a/.b/c.", "...",
		strings.Repeat("x", MaxIDBytes),
	} {
		if err := CheckID(KindInvalidArgument, "twin", id); err != nil {
			t.Errorf("CheckID(%q) = %v, want nil", id, err)
		}
	}
	for _, tt := range []struct{ id, problem string }{
		{"", "it is empty"},
		{strings.Repeat("x", MaxIDBytes+1), "more than the limit of 1024"},
		{"a\xffb", "not valid UTF-8"},
		{"a\x00b", "control character"},
		{"a\tb", "control character"},
		{"a\x7fb", "control character"},
		{"a\u0085b", "control character"},
		{".", `"." or ".."`},
		{"..", `"." or ".."`},
		{"a/../b", `"." or ".."`},
		{"../a", `"." or ".."`},
		{"a/.", `"." or ".."`},
	} {
		err := CheckID(KindEventRouteIDInvalid, "event route", tt.id)
		e, ok := errors.AsType[*Error](err)
		if !ok || e.Kind != KindEventRouteIDInvalid || !strings.Contains(e.Message, tt.problem) ||
			!strings.HasPrefix(e.Message, "The event route id ") {
			t.Errorf("CheckID(%q) = %v, want an EventRouteIDInvalid error saying %q", tt.id, err, tt.problem)
			continue
		}
		if strings.ContainsFunc(e.Message, func(r rune) bool { return r < ' ' || r == 0x7f || r == 0x85 }) || len(e.Message) > 200 {
			t.Errorf("CheckID(%q) message %q is not short and printable", tt.id, e.Message)
		}
	}
}
