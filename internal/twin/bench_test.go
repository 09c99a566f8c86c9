package twin

import (
	"bytes"
	"encoding/json"
	"testing"
)

// benchDoc is a twin of ten properties, an Object and a component, as stored.
var benchDoc = []byte(`{"$dtId":"room-0042","$etag":"W/\"9c2876c2-aff0-40b3-9fba-0c6be9d020a6\"",
"name":"Conference room 42","temp":21.5,"hum":40,"co2":612,"occupied":true,"floor":4,"area":38.5,
"label":"north wing","status":"ok","address":{"city":"Oslo","zip":"0150","street":"Karl Johans gate 1"},
"therm":{"setPoint":20.5,"mode":"eco","$metadata":{"$lastUpdateTime":"2024-05-01T10:00:00.1234567Z",
"setPoint":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"mode":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"}}},
"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"2024-05-01T10:00:00.1234567Z",
"name":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"temp":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z","sourceTime":"2024-05-01T09:59:59.000125009Z"},
"hum":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"co2":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},
"occupied":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"floor":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},
"area":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"label":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},
"status":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"},"address":{"lastUpdateTime":"2024-05-01T10:00:00.1234567Z"}}}`)

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		var doc map[string]any
		if err := Decode(benchDoc, &doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDocument decodes benchDoc as a patch does, its metadata entries kept as text.
func BenchmarkDecodeDocument(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		if _, err := DecodeDocument(benchDoc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEncodingJSON is the encoding/json baseline for BenchmarkDecode.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		dec := json.NewDecoder(bytes.NewReader(benchDoc))
		dec.UseNumber()
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	var doc map[string]any
	if err := Decode(benchDoc, &doc); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		if _, err := Encode(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeEncodingJSON is the encoding/json baseline for BenchmarkEncode.
func BenchmarkEncodeEncodingJSON(b *testing.B) {
	var doc map[string]any
	if err := Decode(benchDoc, &doc); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		if _, err := json.Marshal(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyTwinPatch parses a three-operation patch and applies it to a decoded twin.
func BenchmarkApplyTwinPatch(b *testing.B) {
	patch := []byte(`[{"op":"replace","path":"/temp","value":22.5},{"op":"add","path":"/therm/mode","value":"off"},{"op":"replace","path":"/address/zip","value":"0151"}]`)
	s := Schema{IsComponent: func(n string) bool { return n == "therm" }}
	b.ReportAllocs()
	for b.Loop() {
		var doc map[string]any
		if err := Decode(benchDoc, &doc); err != nil {
			b.Fatal(err)
		}
		p, err := ParsePatch(patch)
		if err != nil {
			b.Fatal(err)
		}
		if err := ApplyTwinPatch(doc, p, s, t1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePatch parses the body of a two-property PATCH.
func BenchmarkParsePatch(b *testing.B) {
	patch := []byte(`[{"op":"replace","path":"/temp","value":22.5},{"op":"replace","path":"/label","value":"south wing"}]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePatch(patch); err != nil {
			b.Fatal(err)
		}
	}
}
