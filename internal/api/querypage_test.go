package api

import (
	"encoding/json"
	"testing"
)

// TestAppendQueryPage checks that a page written by hand is the JSON encoding/json writes for
// the same compact rows and token.
func TestAppendQueryPage(t *testing.T) {
	token := "eyJxIjoiU0VMRUNUIn0"
	tests := []struct {
		name string
		rows []json.RawMessage
		next *string
	}{
		{name: "empty, last page"},
		{name: "one row", rows: []json.RawMessage{json.RawMessage(`{"$dtId":"a","v":1}`)}},
		{name: "rows and a token", rows: []json.RawMessage{
			json.RawMessage(`{"T":{"$dtId":"a<b>&"},"R":{"$relationshipId":"r"}}`),
			json.RawMessage(`{"COUNT":3}`),
			json.RawMessage(`{"s":"a \"quoted\" \u00e9 string"}`),
		}, next: &token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := tt.rows
			if rows == nil {
				rows = []json.RawMessage{}
			}
			want, err := encodeJSON(struct {
				Value             []json.RawMessage `json:"value"`
				ContinuationToken *string           `json:"continuationToken"`
			}{rows, tt.next})
			if err != nil {
				t.Fatal(err)
			}
			got := appendQueryPage(nil, tt.rows, tt.next)
			if string(got) != string(want) {
				t.Errorf("appendQueryPage =\n%s\nwant\n%s", got, want)
			}
			if !json.Valid(got) {
				t.Errorf("not JSON: %s", got)
			}
		})
	}
}
