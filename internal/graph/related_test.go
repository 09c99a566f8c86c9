package graph

import (
	"slices"
	"testing"
)

func TestIncomingOutgoing(t *testing.T) {
	e := newEnv(t)
	x := e.index()
	e.write() // after the index is built: Incoming and Outgoing see acknowledged writes
	tests := []struct {
		id, name      string
		incoming, out []string
	}{
		{"s1", "contains", nil, []string{"r1", "r2"}},
		{"r1", "contains", []string{"s1"}, []string{"r2"}},
		{"r2", "contains", []string{"r1", "s1"}, nil},
		{"r2", "adjacent", nil, nil},
		{"nobody", "contains", nil, nil},
	}
	for _, tt := range tests {
		in, err := x.Incoming(e.ctx, tt.id, tt.name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := x.Outgoing(e.ctx, tt.id, tt.name)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(in)
		slices.Sort(out)
		if !slices.Equal(in, tt.incoming) || !slices.Equal(out, tt.out) {
			t.Errorf("%s %s: Incoming %v Outgoing %v, want %v %v", tt.id, tt.name, in, out, tt.incoming, tt.out)
		}
	}
	e.change() // r1 -c3-> r2 deleted; r4 -c4-> s1 added
	in, err := x.Incoming(e.ctx, "s1", "contains")
	if err != nil {
		t.Fatal(err)
	}
	out, err := x.Outgoing(e.ctx, "r1", "contains")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in, []string{"r4"}) || len(out) != 0 {
		t.Errorf("after changes: Incoming(s1) %v Outgoing(r1) %v, want [r4] []", in, out)
	}
}
