package history_test

import (
	"testing"

	"github.com/twinflow/twinflow/internal/history"
)

func TestNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"21.5", 21.5, true},
		{"-3", -3, true},
		{"1e3", 1000, true},
		{"0", 0, true},
		{"1e999", 0, false}, // beyond float64
		{`"21.5"`, 0, false},
		{"true", 0, false},
		{"null", 0, false},
		{`{"a":1}`, 0, false},
		{"[1]", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := history.Number([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("Number(%s) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
