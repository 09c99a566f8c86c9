package twin

import (
	"testing"
)

// FuzzApplyTwinPatch applies arbitrary patches to a fixed twin document: no panics, and a
// patch that applies leaves a document that encodes and decodes to itself.
func FuzzApplyTwinPatch(f *testing.F) {
	for _, s := range []string{
		`[{"op":"replace","path":"/temp","value":2}]`,
		`[{"op":"add","path":"/therm/$metadata/sp/sourceTime","value":"2023-02-02T00:00:00Z"}]`,
		`[{"op":"remove","path":"/addr/city"},{"op":"add","path":"/a~1b","value":[1,{"x":2}]}]`,
		`[{"op":"add","path":"/l/-","value":1},{"op":"replace","path":"/$metadata/$model","value":"m"}]`,
		`[{"op":"replace","path":"/therm","value":{"sp":1,"$metadata":{"sp":{"sourceTime":"2020-01-01T00:00:00Z"}}}}]`,
		`[{"op":"remove","path":"/"},{"op":"add","path":"//","value":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePatch(data)
		if err != nil {
			return
		}
		var doc map[string]any
		if err := Decode([]byte(baseDoc), &doc); err != nil {
			t.Fatal(err)
		}
		doc["l"] = []any{}
		if err := ApplyTwinPatch(doc, p, Schema{IsComponent: isComp}, t1); err != nil {
			return
		}
		enc, err := Encode(doc)
		if err != nil {
			t.Fatalf("encode after %s: %v", data, err)
		}
		var again map[string]any
		if err := Decode(enc, &again); err != nil {
			t.Fatalf("decode %s: %v", enc, err)
		}
		if enc2, _ := Encode(again); string(enc2) != string(enc) {
			t.Fatalf("round trip changed %s into %s", enc, enc2)
		}
	})
}
