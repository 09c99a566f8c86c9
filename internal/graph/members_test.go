package graph

import (
	"slices"
	"testing"
)

// TestMembers checks that packed members give back what was packed, and that malformed ones
// are told apart.
func TestMembers(t *testing.T) {
	props := []prop{{name: 0, start: 9, end: 25}, {name: 300, start: 26, end: 26}, {name: 2, start: 40, end: 70000}, {name: 1<<32 - 1, start: 70001, end: 1<<32 - 1}}
	m := members(packMembers(nil, props))
	if got := slices.Collect(m.all()); !slices.Equal(got, props) {
		t.Errorf("unpacked %v, want %v", got, props)
	}
	if !m.valid(1<<32 - 1 + 1) {
		t.Error("valid members reported malformed")
	}
	if m.valid(300) {
		t.Error("members with a name out of range reported valid")
	}
	for _, bad := range []members{m[:len(m)-1], {0x80}, {1, 0x80}, {1, 2, 0xff, 0xff, 0xff, 0xff, 0x7f}} {
		if bad.valid(1 << 20) {
			t.Errorf("malformed members %x reported valid", []byte(bad))
		}
	}
	if len(m) >= 12*len(props) {
		t.Errorf("%d members packed into %d bytes", len(props), len(m))
	}
}
