package tracecontext

import (
	"strings"
	"testing"
)

func TestParseParent(t *testing.T) {
	const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tt := range []struct {
		in   string
		ok   bool
		want string // the version-00 form, when ok
	}{
		{valid, true, valid},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09", true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09"},
		// A later version is read for its version-00 fields.
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", true, valid},
		{"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds", true, valid},
		{"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", false, ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", false, ""},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false, ""},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", false, ""},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false, ""},
		{"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", false, ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", false, ""},
		{"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01", false, ""},
		{"00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01", false, ""},
		{"", false, ""},
		{"garbage", false, ""},
	} {
		sp, ok := ParseParent(tt.in)
		if ok != tt.ok {
			t.Errorf("ParseParent(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok && sp.String() != tt.want {
			t.Errorf("ParseParent(%q) = %s, want %s", tt.in, sp, tt.want)
		}
	}
}

func TestNewAndChild(t *testing.T) {
	root := New()
	if root.Flags != 0x01 {
		t.Errorf("new trace flags = %02x, want 01 (sampled)", root.Flags)
	}
	if back, ok := ParseParent(root.String()); !ok || back != root {
		t.Errorf("new span %s does not parse back: %v %v", root, back, ok)
	}
	if other := New(); other.TraceID == root.TraceID {
		t.Error("two new traces share a trace id")
	}
	parent, _ := ParseParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
	c := parent.Child()
	if c.TraceID != parent.TraceID || c.Flags != parent.Flags || c.SpanID == parent.SpanID || c.SpanID == [8]byte{} {
		t.Errorf("Child of %s = %s, want the same trace and flags with a new span id", parent, c)
	}
	if c2 := parent.Child(); c2.SpanID == c.SpanID {
		t.Error("two children share a span id")
	}
}

func TestParseState(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"rojo=00f067aa0ba902b7", "rojo=00f067aa0ba902b7", true},
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
		// Optional white space and empty members (from joined header lines) go.
		{" rojo=00f067aa0ba902b7 ,\t, congo=t61rcWkgMzE ,", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
		{"fw529a3039@dt=a value with spaces", "fw529a3039@dt=a value with spaces", true},
		{"a-b_c*d/e=1", "a-b_c*d/e=1", true},
		{"Rojo=1", "", false},
		{"1rojo=1", "", false},
		{"rojo", "", false},
		{"rojo=", "", false},
		{"rojo=a=b", "", false},
		{"rojo=trailing ", "rojo=trailing", true}, // the space is white space around the member
		{"rojo=1,rojo=2", "", false},
		{"tenant@Sys=1", "", false},
		{"tenant@=1", "", false},
		{"@sys=1", "", false},
		{"rojo=" + strings.Repeat("x", 257), "", false},
		{"rojo=caf\xc3\xa9", "", false},
	} {
		got, ok := ParseState(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("ParseState(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	var many []string
	for i := range 33 {
		many = append(many, "k"+strings.Repeat("x", i)+"=v")
	}
	if _, ok := ParseState(strings.Join(many[:32], ",")); !ok {
		t.Error("32 members refused")
	}
	if _, ok := ParseState(strings.Join(many, ",")); ok {
		t.Error("33 members accepted")
	}
}

func BenchmarkParseChild(b *testing.B) {
	for b.Loop() {
		sp, ok := ParseParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		if !ok {
			b.Fatal("invalid")
		}
		_ = sp.Child().String()
	}
}
