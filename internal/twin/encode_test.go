package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// stdEncode is encoding/json's encoding without HTML escaping, the reference for Encode.
func stdEncode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

var encodeSeeds = []string{
	`null`, `true`, `false`, `0`, `-1.5e-7`, `""`, `"plain"`,
	`"quote\" backslash\\ slash/ <html> & tab\t nl\n cr\r bs\b ff\f nul\u0000 us\u001f del\u007f"`,
	`"unicode é ✓ 😀 \u2028 \u2029"`,
	`{"b":1,"a":[true,null,{"z":"x","$y":{}}],"":[],"é":"ü"}`,
	`[[],[[]],{}]`,
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range encodeSeeds {
		var v any
		if err := Decode([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		got, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := stdEncode(v)
		if !bytes.Equal(got, want) {
			t.Errorf("Encode(%s)\n got %s\nwant %s", s, got, want)
		}
	}
	// Invalid UTF-8 becomes U+FFFD, as in encoding/json.
	got, _ := Encode("a\xffb")
	if want, _ := stdEncode("a\xffb"); !bytes.Equal(got, want) {
		t.Errorf("invalid UTF-8: got %s want %s", got, want)
	}
	if _, err := Encode(json.Number("1x")); err == nil {
		t.Error("Encode accepted an invalid json.Number")
	}
	got, _ = Encode(map[string]any{"n": 1.5, "i": 3})
	if string(got) != `{"i":3,"n":1.5}` {
		t.Errorf("Go numbers: %s", got)
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range encodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if Decode(data, &v) != nil {
			return
		}
		got, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode(%s): %v", data, err)
		}
		want, _ := stdEncode(v)
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode(%s)\n got %s\nwant %s", data, got, want)
		}
	})
}

// stdDecode is encoding/json's decoding with UseNumber, the reference for Decode.
func stdDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	return v, nil
}

var decodeSeeds = []string{
	` {"a" : [1, -0.5e+3, 0, 1E2, true, false, null, "x"], "b": {"c": {}}, "": []} `,
	`"esc \" \\ \/ \b \f \n \r \t \u00e9 \u2028 \ud83d\ude00 \ud800 \udc00x \ud800\u0041"`,
	"\"raw \xff invalid\"", `"😀 é"`, `{"dup":1,"dup":2}`,
	`01`, `-`, `1.`, `1e`, `.5`, `+1`, `[1,]`, `{"a":1,}`, `{"a"}`, `{1:2}`, `tru`, `nul`, `"abc`, `"\x"`, `"\u12"`,
	"\"ctl \x01\"", `[1 2]`, `{} {}`, ``, ` `, `[`, `{"a":`, `-01`, `1.5e+`, `[[[[]]]]`,
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
	deep := bytes.Repeat([]byte("["), maxDepth+2)
	if _, err := decodeValue(deep); err == nil {
		t.Error("decoded a value nested deeper than maxDepth")
	}
	var m map[string]any
	if err := Decode([]byte(`[1]`), &m); err == nil {
		t.Error("decoded an array into a map")
	}
	if err := Decode([]byte(`null`), &m); err != nil || m != nil {
		t.Errorf("null into a map: %v %v", m, err)
	}
	var st struct{ N any }
	if err := Decode([]byte(`{"N":1.5}`), &st); err != nil || st.N != json.Number("1.5") {
		t.Errorf("struct decode: %#v %v", st, err)
	}
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := stdDecode(data)
	var got any
	err := Decode(data, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Decode(%q) error %v; encoding/json %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%q) = %#v; encoding/json %#v", data, got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range append(decodeSeeds, encodeSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
	})
}

func TestDecodeDocument(t *testing.T) {
	// Stored documents: the entries left as text encode back to the same document.
	var doc map[string]any
	if err := Decode(benchDoc, &doc); err != nil {
		t.Fatal(err)
	}
	want, _ := Encode(doc)
	stored, err := DecodeDocument(want)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stored[KeyMetadata].(map[string]any)["temp"].(rawJSON); !ok {
		t.Errorf("$metadata.temp decoded as %T; want it kept as text", stored[KeyMetadata].(map[string]any)["temp"])
	}
	if got, err := Encode(stored); err != nil || string(got) != string(want) {
		t.Errorf("Encode(DecodeDocument(d)) = %s, %v; want %s", got, err, want)
	}

	// Any value as a metadata entry: DecodeDocument refuses what Decode refuses and keeps the
	// rest equal to what Decode gives.
	for _, s := range append(decodeSeeds, `{"a":[1 2]}`, `{"a":{"b":}}`, `{"a":1,}`, `{"a"}`, `{"a":tru}`, `{"x":{}}`) {
		data := []byte(`{"$metadata":{"p":` + s + `}}`)
		var plain any
		perr := Decode(data, &plain)
		stored, err := DecodeDocument(data)
		if (err == nil) != (perr == nil) {
			t.Errorf("DecodeDocument(%s) error %v; Decode %v", data, err, perr)
			continue
		}
		if err != nil {
			continue
		}
		enc, err := Encode(stored)
		if err != nil {
			t.Errorf("Encode(DecodeDocument(%s)): %v", data, err)
			continue
		}
		var again any
		if err := Decode(enc, &again); err != nil || !reflect.DeepEqual(again, plain) {
			t.Errorf("DecodeDocument(%s) encodes as %s (%v); want the value Decode gives", data, enc, err)
		}
	}
	if _, err := DecodeDocument([]byte(`[1]`)); err == nil {
		t.Error("DecodeDocument decoded an array")
	}
}

func TestDecodeMembers(t *testing.T) {
	tests := []struct {
		name, in string
		keep     []string
		want     map[string]any
		wantErr  bool
	}{
		{"keeps named members", `{"a":1,"b":{"x":[1,2]},"c":"s","$metadata":{"a":{"lastUpdateTime":"t"}}}`,
			[]string{"b", "$metadata"}, map[string]any{"b": map[string]any{"x": []any{json.Number("1"), json.Number("2")}},
				"$metadata": map[string]any{"a": map[string]any{"lastUpdateTime": "t"}}}, false},
		{"skips the last member", `{"a":1,"b":2}`, []string{"a"}, map[string]any{"a": json.Number("1")}, false},
		{"nothing kept", `{"a":1}`, []string{}, map[string]any{}, false},
		{"nested members of the same name stay", `{"o":{"a":1},"a":2}`, []string{"o"},
			map[string]any{"o": map[string]any{"a": json.Number("1")}}, false},
		{"skipped members are still checked", `{"a":1,"b":[1,}`, []string{"a"}, nil, true},
		{"not an object", `[1]`, []string{"a"}, nil, true},
		{"trailing data", `{"a":1} x`, []string{"a"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMembers([]byte(tt.in), tt.keep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeMembers(%s) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeMembers(%s) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}
