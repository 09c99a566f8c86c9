package twin

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

const help = " Please provide a valid patch document. See section on update apis in the documentation http://aka.ms/adtv2twins."

func TestParsePatch(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Patch
		wantErr string // JsonPatchInvalid message; empty means success
	}{
		{name: "empty", in: `[]`, want: Patch{}},
		{
			name: "all ops",
			in:   `[{"op":"add","path":"/a","value":1},{"op":"replace","path":"/b/c","value":"x"},{"op":"remove","path":"/d"}]`,
			want: Patch{
				{Op: OpAdd, Path: "/a", Segments: []string{"a"}, Value: json.Number("1")},
				{Op: OpReplace, Path: "/b/c", Segments: []string{"b", "c"}, Value: "x"},
				{Op: OpRemove, Path: "/d", Segments: []string{"d"}},
			},
		},
		{
			name: "escapes",
			in:   `[{"op":"add","path":"/a~1b/c~0d/~01","value":null}]`,
			want: Patch{{Op: OpAdd, Path: "/a~1b/c~0d/~01", Segments: []string{"a/b", "c~d", "~1"}, Value: nil}},
		},
		{
			name: "metadata paths",
			in:   `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:a;1"},{"op":"add","path":"/$metadata/p/sourceTime","value":"2022-01-01T00:00:00Z"}]`,
			want: Patch{
				{Op: OpReplace, Path: "/$metadata/$model", Segments: []string{"$metadata", "$model"}, Value: "dtmi:a;1"},
				{Op: OpAdd, Path: "/$metadata/p/sourceTime", Segments: []string{"$metadata", "p", "sourceTime"}, Value: "2022-01-01T00:00:00Z"},
			},
		},
		{name: "move", in: `[{"op":"move","from":"/a","path":"/b"}]`, wantErr: "Unsupported operation type move." + help},
		{name: "copy", in: `[{"op":"copy","from":"/a","path":"/b"}]`, wantErr: "Unsupported operation type copy." + help},
		{name: "test", in: `[{"op":"test","path":"/a","value":1}]`, wantErr: "Unsupported operation type test." + help},
		{name: "empty object", in: `[{}]`, wantErr: "Parameter op must not be empty." + help},
		{name: "missing op", in: `[{"path":"/a","value":1}]`, wantErr: "Parameter op must not be empty." + help},
		{name: "op not a string", in: `[{"op":1,"path":"/a"}]`, wantErr: "Parameter op must not be empty." + help},
		{name: "missing path", in: `[{"op":"remove"}]`, wantErr: "Parameter path must not be empty." + help},
		{name: "root path", in: `[{"op":"add","path":"","value":{}}]`, wantErr: `The path "" is not a valid JSON pointer below the document root.` + help},
		{name: "relative path", in: `[{"op":"add","path":"a","value":1}]`, wantErr: `The path "a" is not a valid JSON pointer below the document root.` + help},
		{name: "bad escape", in: `[{"op":"remove","path":"/a~2"}]`, wantErr: "The path segment 'a~2' has an invalid escape; only ~0 and ~1 are allowed." + help},
		{name: "trailing tilde", in: `[{"op":"remove","path":"/a~"}]`, wantErr: "The path segment 'a~' has an invalid escape; only ~0 and ~1 are allowed." + help},
		{name: "missing value", in: `[{"op":"add","path":"/a"}]`, wantErr: "Parameter value must be provided for operation add on path /a." + help},
		{name: "not an array", in: `{"op":"add"}`, wantErr: "The patch document must be a JSON array of operations." + help},
		{name: "not an object", in: `[1]`, wantErr: "Each operation of the patch document must be a JSON object." + help},
		{name: "trailing data", in: `[] }`, wantErr: "The patch document is not valid JSON: json: offset 3: unexpected data after the JSON value." + help},
		{name: "malformed", in: `[{"op":`, wantErr: "The patch document is not valid JSON: unexpected end of JSON input." + help},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePatch([]byte(tt.in))
			if tt.wantErr != "" {
				var te *Error
				if !errors.As(err, &te) || te.Kind != KindJSONPatchInvalid || te.Message != tt.wantErr {
					t.Fatalf("ParsePatch error = %#v; want JsonPatchInvalid %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePatch: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePatch = %#v; want %#v", got, tt.want)
			}
		})
	}
}

func TestOpMarshalJSON(t *testing.T) {
	p := Patch{
		{Op: OpAdd, Path: "/a", Value: json.Number("1.5")},
		{Op: OpReplace, Path: "/b", Value: nil},
		{Op: OpRemove, Path: "/c~1d"},
		{Op: OpAdd, Path: "/e", Value: map[string]any{"x": "<y>"}},
	}
	got, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"add","path":"/a","value":1.5},{"op":"replace","path":"/b","value":null},{"op":"remove","path":"/c~1d"},{"op":"add","path":"/e","value":{"x":"\u003cy\u003e"}}]`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestPointerRoundTrip(t *testing.T) {
	for _, segs := range [][]string{{"a"}, {"a/b", "~c"}, {"", "x"}, {"~1"}} {
		p := JoinPointer(segs...)
		got, err := SplitPointer(p)
		if err != nil || !reflect.DeepEqual(got, segs) {
			t.Errorf("SplitPointer(JoinPointer(%q) = %q) = %q, %v", segs, p, got, err)
		}
	}
}

func TestPatchWithin(t *testing.T) {
	p := Patch{{Op: OpAdd, Path: "/x~1y", Segments: []string{"x/y"}, Value: 1}}
	got := p.Within("th/erm")
	want := Patch{{Op: OpAdd, Path: "/th~1erm/x~1y", Segments: []string{"th/erm", "x/y"}, Value: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Within = %#v; want %#v", got, want)
	}
	if p[0].Path != "/x~1y" {
		t.Fatal("Within changed the original patch")
	}
}

func TestPatchAppendJSON(t *testing.T) {
	for _, tt := range []struct {
		p    Patch
		want string
	}{
		{nil, `[]`},
		{Patch{{Op: OpRemove, Path: "/a"}}, `[{"op":"remove","path":"/a"}]`},
		{Patch{{Op: OpAdd, Path: "/a", Value: "<b>"}, {Op: OpReplace, Path: "/c", Value: []any{json.Number("1")}}}, `[{"op":"add","path":"/a","value":"<b>"},{"op":"replace","path":"/c","value":[1]}]`},
	} {
		got, err := tt.p.AppendJSON([]byte("x"))
		if err != nil || string(got) != "x"+tt.want {
			t.Errorf("AppendJSON(%v) = %s, %v; want x%s", tt.p, got, err, tt.want)
		}
	}
	if _, err := (Patch{{Op: OpAdd, Path: "/a", Value: json.Number("x")}}).AppendJSON(nil); err == nil {
		t.Error("AppendJSON encoded an invalid number")
	}
}

// parsePatchFromValue reads a patch from the generic decoding of the whole document: the
// reference ParsePatch must agree with, patch for patch and error for error.
func parsePatchFromValue(data []byte) (Patch, error) {
	v, err := decodeValue(data)
	if err != nil {
		return nil, JSONPatchInvalid("The patch document is not valid JSON: " + err.Error() + ".")
	}
	raw, ok := v.([]any)
	if !ok {
		return nil, JSONPatchInvalid("The patch document must be a JSON array of operations.")
	}
	p := Patch{}
	for _, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, JSONPatchInvalid("Each operation of the patch document must be a JSON object.")
		}
		var r rawOp
		r.object = true
		r.op, _ = m["op"].(string)
		r.path, r.pathString = m["path"].(string)
		r.value, r.hasValue = m["value"]
		op, err := r.parse()
		if err != nil {
			return nil, err
		}
		p = append(p, op)
	}
	return p, nil
}

var patchSeeds = []string{
	`[]`, ` [ ] `, `[{"op":"add","path":"/a","value":1}]`, `[{"op":"add","path":"/a","value":1,"op":"remove"}]`,
	`[{"op":"add","path":"/a","value":1,"path":2}]`, `[{"op":"remove","path":"/a","value":{"x":[1,2]}}]`,
	`[{"from":"/b","op":"move","path":"/a"}]`, `[{"o\u0070":"add","path":"/a","value":null}]`,
	`[{"op":"add","path":"/a","value":1},2]`, `[{"op":"add","path":"/a"} ]`, `[{"op":"add","path":"/a","value":1}`,
	`[{"op":"add","path":"/a","value":1}]x`, `[{"op":"add","path":"/a","value":}]`, `[{"op":"add","path":"/a","value":1},]`,
	`[{"op":["x"],"path":"/a"}]`, `[{"op":"add" "path":"/a"}]`, `[{"op":"add","path":"/a","value":1}{}]`, `{"op":"add"}`,
	`"x"`, `[[]]`, `[{}]`, `[{"op":"add","path":"\ud800","value":"\u00e9"}]`,
}

func checkParsePatch(t *testing.T, data []byte) {
	t.Helper()
	got, err := ParsePatch(data)
	want, wantErr := parsePatchFromValue(data)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(err, wantErr) {
		t.Fatalf("ParsePatch(%s) = %#v, %v; want %#v, %v", data, got, err, want, wantErr)
	}
}

func TestParsePatchMatchesDecodedDocument(t *testing.T) {
	for _, s := range patchSeeds {
		checkParsePatch(t, []byte(s))
	}
	for _, s := range decodeSeeds {
		checkParsePatch(t, []byte(s))
		checkParsePatch(t, []byte(`[`+s+`]`))
		checkParsePatch(t, []byte(`[{"op":"add","path":"/a","value":`+s+`}]`))
	}
}

func FuzzParsePatch(f *testing.F) {
	for _, s := range patchSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParsePatch(t, data)
	})
}
