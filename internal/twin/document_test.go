package twin

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	t0 = "2024-01-01T00:00:00.0000000Z"
	t1 = "2024-01-02T00:00:00.0000000Z"
)

func decodeMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := Decode([]byte(s), &m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// sameJSON compares got against the JSON text want, independent of key order.
func sameJSON(t *testing.T, got any, want string) {
	t.Helper()
	gb, err := Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	w := decodeMap(t, want)
	wb, _ := Encode(w)
	if string(gb) != string(wb) {
		t.Fatalf("got  %s\nwant %s", gb, wb)
	}
}

func isComp(name string) bool { return name == "therm" }

func wantError(t *testing.T, err error, kind Kind, msg string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) || te.Kind != kind || (msg != "" && te.Message != msg && (len(te.Details) == 0 || te.Details[0].Message != msg)) {
		t.Fatalf("error = %#v; want %v %q", err, kind, msg)
	}
}

func TestFormatTime(t *testing.T) {
	tm, _ := jsonTime("2024-03-04T05:06:07.123456789+02:00")
	if got := FormatTime(tm); got != "2024-03-04T03:06:07.1234567Z" {
		t.Fatalf("FormatTime = %s", got)
	}
	// Every other instant formats as time.Format does, including years the layout's four
	// digits do not fit.
	for _, tm := range []time.Time{
		time.Date(2026, 11, 26, 23, 59, 59, 999999999, time.UTC),
		time.Date(1999, 1, 1, 0, 0, 0, 0, time.FixedZone("x", -5*3600)),
		time.Date(0, 1, 1, 0, 0, 0, 99, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 100, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 15, 12, 30, 45, 123456700, time.UTC),
		{},
	} {
		if got, want := FormatTime(tm), tm.UTC().Format(TimeLayout); got != want {
			t.Errorf("FormatTime(%v) = %s; want %s", tm, got, want)
		}
	}
}

func TestNewDocument(t *testing.T) {
	tests := []struct {
		name, body, want string
		kind             Kind
		msg              string
	}{
		{
			name: "properties, component, sourceTime, ignored fields",
			body: `{"$dtId":"other","$etag":"W/\"old\"","temp":21.5,"name":"x",
				"$metadata":{"$model":"dtmi:ex:Room;1","temp":{"sourceTime":"2022-05-31T12:00:01.000125009Z","lastUpdateTime":"1999-01-01T00:00:00Z"},"gone":{"sourceTime":"2022-01-01T00:00:00Z"}},
				"therm":{"setPoint":20,"$metadata":{"setPoint":{"sourceTime":"2022-01-01T00:00:00Z"}}}}`,
			want: `{"$dtId":"r1","$etag":"W/\"e\"","temp":21.5,"name":"x",
				"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"` + t0 + `",
					"temp":{"lastUpdateTime":"` + t0 + `","sourceTime":"2022-05-31T12:00:01.000125009Z"},
					"name":{"lastUpdateTime":"` + t0 + `"}},
				"therm":{"setPoint":20,"$metadata":{"$lastUpdateTime":"` + t0 + `","setPoint":{"lastUpdateTime":"` + t0 + `","sourceTime":"2022-01-01T00:00:00Z"}}}}`,
		},
		{
			name: "empty component",
			body: `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{"$metadata":{}}}`,
			want: `{"$dtId":"r1","$etag":"W/\"e\"","$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"` + t0 + `"},"therm":{"$metadata":{"$lastUpdateTime":"` + t0 + `"}}}`,
		},
		{name: "no metadata", body: `{"a":1}`, kind: KindValidationFailed, msg: "The twin must have a $metadata object with $model."},
		{name: "no model", body: `{"$metadata":{}}`, kind: KindValidationFailed, msg: "The twin must specify its model in $metadata.$model."},
		{name: "model not a string", body: `{"$metadata":{"$model":1}}`, kind: KindValidationFailed, msg: "The twin must specify its model in $metadata.$model."},
		{name: "unknown dollar key", body: `{"$metadata":{"$model":"m"},"$foo":1}`, kind: KindValidationFailed, msg: "'$foo' is not a settable twin field."},
		{name: "component not object", body: `{"$metadata":{"$model":"m"},"therm":1}`, kind: KindValidationFailed, msg: "Component 'therm' must be a JSON object."},
		{name: "bad sourceTime", body: `{"$metadata":{"$model":"m","a":{"sourceTime":"yesterday"}},"a":1}`, kind: KindValidationFailed, msg: "The sourceTime of 'a' must be an RFC 3339 date-time string."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := NewDocument("r1", `W/"e"`, decodeMap(t, tt.body), isComp, t0)
			if tt.kind != 0 {
				wantError(t, err, tt.kind, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, doc, tt.want)
		})
	}
}

const baseDoc = `{"$dtId":"r1","$etag":"W/\"e\"","temp":1,"addr":{"city":"Oslo"},"a/b":true,
	"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"` + t0 + `",
		"temp":{"lastUpdateTime":"` + t0 + `","sourceTime":"2022-01-01T00:00:00Z"},
		"addr":{"lastUpdateTime":"` + t0 + `"},"a/b":{"lastUpdateTime":"` + t0 + `"}},
	"therm":{"sp":5,"$metadata":{"$lastUpdateTime":"` + t0 + `","sp":{"lastUpdateTime":"` + t0 + `"}}}}`

func TestApplyTwinPatch(t *testing.T) {
	tests := []struct {
		name, patch string
		// want lists the expected values at "/"-joined key paths after the patch; a nil value
		// means the key must be absent.
		want map[string]any
		kind Kind
		msg  string
	}{
		{
			name:  "replace keeps sourceTime and updates times",
			patch: `[{"op":"replace","path":"/temp","value":2}]`,
			want: map[string]any{
				"temp": json.Number("2"), "$metadata/temp/lastUpdateTime": t1,
				"$metadata/temp/sourceTime": "2022-01-01T00:00:00Z", "$metadata/$lastUpdateTime": t1,
				"$metadata/addr/lastUpdateTime": t0, "therm/$metadata/$lastUpdateTime": t0,
			},
		},
		{
			name:  "add new property and sourceTime",
			patch: `[{"op":"add","path":"/hum","value":40},{"op":"add","path":"/$metadata/hum/sourceTime","value":"2023-01-01T00:00:00Z"}]`,
			want:  map[string]any{"hum": json.Number("40"), "$metadata/hum/lastUpdateTime": t1, "$metadata/hum/sourceTime": "2023-01-01T00:00:00Z"},
		},
		{
			name:  "sourceTime before value",
			patch: `[{"op":"add","path":"/$metadata/hum/sourceTime","value":"2023-01-01T00:00:00Z"},{"op":"add","path":"/hum","value":40}]`,
			want:  map[string]any{"$metadata/hum/lastUpdateTime": t1, "$metadata/hum/sourceTime": "2023-01-01T00:00:00Z"},
		},
		{
			name:  "sourceTime of an unset property is dropped",
			patch: `[{"op":"add","path":"/$metadata/hum/sourceTime","value":"2023-01-01T00:00:00Z"}]`,
			want:  map[string]any{"$metadata/hum": nil, "$metadata/$lastUpdateTime": t1},
		},
		{
			name:  "replace sourceTime",
			patch: `[{"op":"replace","path":"/$metadata/temp/sourceTime","value":"2023-01-01T00:00:00Z"}]`,
			want:  map[string]any{"$metadata/temp/sourceTime": "2023-01-01T00:00:00Z", "$metadata/temp/lastUpdateTime": t0},
		},
		{
			name:  "remove sourceTime",
			patch: `[{"op":"remove","path":"/$metadata/temp/sourceTime"}]`,
			want:  map[string]any{"$metadata/temp/sourceTime": nil, "temp": json.Number("1")},
		},
		{
			name:  "sub property",
			patch: `[{"op":"replace","path":"/addr/city","value":"Bergen"},{"op":"add","path":"/addr/zip","value":"5003"}]`,
			want:  map[string]any{"addr/city": "Bergen", "addr/zip": "5003", "$metadata/addr/lastUpdateTime": t1},
		},
		{
			name:  "escaped key",
			patch: `[{"op":"replace","path":"/a~1b","value":false}]`,
			want:  map[string]any{"a/b": false, "$metadata/a/b/lastUpdateTime": t1},
		},
		{
			name:  "remove property drops its metadata",
			patch: `[{"op":"remove","path":"/temp"}]`,
			want:  map[string]any{"temp": nil, "$metadata/temp": nil, "$metadata/$lastUpdateTime": t1},
		},
		{
			name:  "component property",
			patch: `[{"op":"replace","path":"/therm/sp","value":7},{"op":"add","path":"/therm/$metadata/sp/sourceTime","value":"2023-02-02T00:00:00Z"}]`,
			want: map[string]any{
				"therm/sp": json.Number("7"), "therm/$metadata/sp/lastUpdateTime": t1,
				"therm/$metadata/sp/sourceTime": "2023-02-02T00:00:00Z", "therm/$metadata/$lastUpdateTime": t1,
				"$metadata/$lastUpdateTime": t1, "$metadata/therm": nil,
			},
		},
		{
			name:  "whole component replaced",
			patch: `[{"op":"replace","path":"/therm","value":{"sp":9,"$metadata":{"sp":{"sourceTime":"2023-03-03T00:00:00Z"}}}}]`,
			want:  map[string]any{"therm/sp": json.Number("9"), "therm/$metadata/sp/sourceTime": "2023-03-03T00:00:00Z", "therm/$metadata/$lastUpdateTime": t1},
		},
		{
			name:  "model migration",
			patch: `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Room;2"},{"op":"add","path":"/req","value":1}]`,
			want:  map[string]any{"$metadata/$model": "dtmi:ex:Room;2", "req": json.Number("1")},
		},
		{name: "replace missing", patch: `[{"op":"replace","path":"/hum","value":1}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'hum' was not found." + help},
		{name: "remove missing", patch: `[{"op":"remove","path":"/isAccessDoorRestricted"}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'isAccessDoorRestricted' was not found." + help},
		{name: "sub of missing object", patch: `[{"op":"add","path":"/loc/x","value":1}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'loc' was not found." + help},
		{name: "sub of scalar", patch: `[{"op":"add","path":"/temp/x","value":1}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'x' was not found." + help},
		{name: "remove missing sourceTime", patch: `[{"op":"remove","path":"/$metadata/addr/sourceTime"}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'sourceTime' was not found." + help},
		{name: "replace missing sourceTime", patch: `[{"op":"replace","path":"/$metadata/addr/sourceTime","value":"2023-01-01T00:00:00Z"}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'sourceTime' was not found." + help},
		{name: "bad sourceTime", patch: `[{"op":"add","path":"/$metadata/temp/sourceTime","value":"noon"}]`, kind: KindValidationFailed, msg: "The sourceTime of 'temp' must be an RFC 3339 date-time string."},
		{name: "remove model", patch: `[{"op":"remove","path":"/$metadata/$model"}]`, kind: KindJSONPatchInvalid, msg: "The model of a twin cannot be removed; replace /$metadata/$model instead." + help},
		{name: "model not string", patch: `[{"op":"replace","path":"/$metadata/$model","value":5}]`, kind: KindJSONPatchInvalid, msg: "The value of /$metadata/$model must be a model id string." + help},
		{name: "lastUpdateTime", patch: `[{"op":"replace","path":"/$metadata/temp/lastUpdateTime","value":"x"}]`, kind: KindJSONPatchInvalid, msg: "The path /$metadata/temp/lastUpdateTime cannot be patched; only /$metadata/$model and /$metadata/<property>/sourceTime can." + help},
		{name: "dtId", patch: `[{"op":"replace","path":"/$dtId","value":"x"}]`, kind: KindJSONPatchInvalid, msg: "The path /$dtId cannot be patched." + help},
		{name: "component metadata", patch: `[{"op":"add","path":"/therm/$metadata/$lastUpdateTime","value":"x"}]`, kind: KindJSONPatchInvalid},
		{name: "component missing property", patch: `[{"op":"remove","path":"/therm/nope"}]`, kind: KindJSONPatchInvalid, msg: "The target location specified by path segment 'nope' was not found." + help},
		{name: "validator refuses", patch: `[{"op":"add","path":"/bad","value":1}]`, kind: KindValidationFailed, msg: "refused bad"},
	}
	validate := func(path []string, v any) error {
		if path[0] == "bad" {
			return InvalidTwin("refused bad")
		}
		return nil
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := decodeMap(t, baseDoc)
			p, err := ParsePatch([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			err = ApplyTwinPatch(doc, p, Schema{IsComponent: isComp, ValidatePath: validate}, t1)
			// A document decoded for a patch, with its metadata entries left as text, must
			// come out the same.
			stored, derr := DecodeDocument([]byte(baseDoc))
			if derr != nil {
				t.Fatal(derr)
			}
			serr := ApplyTwinPatch(stored, p, Schema{IsComponent: isComp, ValidatePath: validate}, t1)
			if (serr == nil) != (err == nil) {
				t.Fatalf("patching the DecodeDocument form: error %v; the Decode form: %v", serr, err)
			}
			if tt.kind != 0 {
				wantError(t, err, tt.kind, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := Encode(doc)
			if senc, err := Encode(stored); err != nil || string(senc) != string(enc) {
				t.Fatalf("DecodeDocument form encodes as %s (%v); Decode form as %s", senc, err, enc)
			}
			for path, want := range tt.want {
				got, ok := lookup(doc, path)
				if want == nil {
					if ok {
						t.Errorf("%s = %v; want absent", path, got)
					}
					continue
				}
				if !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v (present %v); want %#v", path, got, ok, want)
				}
			}
		})
	}
}

// lookup finds a "/"-separated key path, where a key may itself contain "/".
func lookup(doc map[string]any, path string) (any, bool) {
	if v, ok := doc[path]; ok {
		return v, true
	}
	for i := range len(path) {
		if path[i] != '/' {
			continue
		}
		m, ok := doc[path[:i]].(map[string]any)
		if !ok {
			continue
		}
		if v, ok := lookup(m, path[i+1:]); ok {
			return v, true
		}
	}
	return nil, false
}

func TestDiff(t *testing.T) {
	old := decodeMap(t, baseDoc)
	new := decodeMap(t, `{"temp":1,"addr":{"city":"Bergen"},"hum":3,"$metadata":{"$model":"dtmi:ex:Room;2"},"therm":{"sp":6,"mode":"x"}}`)
	got, err := json.Marshal(Diff(old, new, isComp))
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Room;2"},{"op":"replace","path":"/addr","value":{"city":"Bergen"}},{"op":"remove","path":"/a~1b"},{"op":"add","path":"/hum","value":3},{"op":"add","path":"/therm/mode","value":"x"},{"op":"replace","path":"/therm/sp","value":6}]`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if d := Diff(old, old, isComp); len(d) != 0 {
		t.Fatalf("Diff of a document with itself = %v", d)
	}
}

func TestCheckLimits(t *testing.T) {
	long := strings.Repeat("x", 11)
	tests := []struct {
		v   any
		msg string
	}{
		{v: "short"},
		{v: map[string]any{"k": []any{"a", json.Number("1")}}},
		{v: map[string]any{"$metadata": map[string]any{long: long}}},
		{v: long, msg: "The string value of 'p' is 11 bytes long; the limit is 10 bytes."},
		{v: map[string]any{"k": []any{"a", long}}, msg: "The string value of 'p/k/1' is 11 bytes long; the limit is 10 bytes."},
		{v: map[string]any{"o": map[string]any{long: true}}, msg: "A property name in 'p/o' is 11 bytes long; the limit is 10 bytes."},
	}
	for _, tt := range tests {
		err := CheckLimits("p", tt.v, 10, 10)
		if tt.msg == "" {
			if err != nil {
				t.Errorf("CheckLimits(%v): %v", tt.v, err)
			}
			continue
		}
		wantError(t, err, KindValidationFailed, tt.msg)
	}
}

func TestRelationshipDocument(t *testing.T) {
	body := decodeMap(t, `{"$relationshipId":"ignored","$sourceId":"ignored","$etag":"x","$targetId":"t1","$relationshipName":"contains","b":2,"a":{"z":"<"}}`)
	rb, err := ParseRelationshipBody(body)
	if err != nil {
		t.Fatal(err)
	}
	if rb.TargetID != "t1" || rb.Name != "contains" || len(rb.Properties) != 2 {
		t.Fatalf("ParseRelationshipBody = %+v", rb)
	}
	doc, err := EncodeRelationship("s1", "r1", rb.Name, rb.TargetID, `W/"e"`, rb.Properties)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"$relationshipId":"r1","$etag":"W/\"e\"","$sourceId":"s1","$relationshipName":"contains","$targetId":"t1","a":{"z":"<"},"b":2}`
	if string(doc) != want {
		t.Fatalf("got  %s\nwant %s", doc, want)
	}
	if got := RelationshipProperties(decodeMap(t, string(doc))); !reflect.DeepEqual(got, rb.Properties) {
		t.Fatalf("RelationshipProperties = %v", got)
	}

	for _, tt := range []struct {
		body string
		kind Kind
	}{
		{`{"$relationshipName":"contains"}`, KindInvalidArgument},
		{`{"$targetId":"t"}`, KindInvalidRelationship},
		{`{"$targetId":"t","$relationshipName":"contains","$x":1}`, KindInvalidArgument},
	} {
		_, err := ParseRelationshipBody(decodeMap(t, tt.body))
		wantError(t, err, tt.kind, "")
	}
}

func TestApplyRelationshipPatch(t *testing.T) {
	tests := []struct {
		patch, want string
		kind        Kind
	}{
		{patch: `[{"op":"replace","path":"/a","value":2},{"op":"add","path":"/c","value":"x"},{"op":"remove","path":"/b"}]`, want: `{"a":2,"c":"x"}`},
		{patch: `[{"op":"replace","path":"/$targetId","value":"t2"}]`, kind: KindJSONPatchInvalid},
		{patch: `[{"op":"replace","path":"/$relationshipName","value":"n"}]`, kind: KindJSONPatchInvalid},
		{patch: `[{"op":"remove","path":"/zz"}]`, kind: KindJSONPatchInvalid},
	}
	for _, tt := range tests {
		props := decodeMap(t, `{"a":1,"b":true}`)
		p, err := ParsePatch([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		err = ApplyRelationshipPatch(props, p)
		if tt.kind != 0 {
			wantError(t, err, tt.kind, "")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, props, tt.want)
	}
	got, _ := json.Marshal(DiffProperties(map[string]any{"a": 1, "b": 2}, map[string]any{"a": 1, "b": 3, "c": 4}))
	if want := `[{"op":"replace","path":"/b","value":3},{"op":"add","path":"/c","value":4}]`; string(got) != want {
		t.Fatalf("DiffProperties = %s; want %s", got, want)
	}
}

func jsonTime(s string) (tm time.Time, err error) {
	return time.Parse(time.RFC3339Nano, s)
}

func TestApplyPointerArrays(t *testing.T) {
	tests := []struct {
		patch, want, errSeg string
	}{
		{patch: `[{"op":"add","path":"/a/-","value":4}]`, want: `{"a":[1,2,3,4],"o":{"l":[{"x":1}]}}`},
		{patch: `[{"op":"add","path":"/a/0","value":0}]`, want: `{"a":[0,1,2,3],"o":{"l":[{"x":1}]}}`},
		{patch: `[{"op":"add","path":"/a/3","value":9}]`, want: `{"a":[1,2,3,9],"o":{"l":[{"x":1}]}}`},
		{patch: `[{"op":"replace","path":"/a/1","value":7}]`, want: `{"a":[1,7,3],"o":{"l":[{"x":1}]}}`},
		{patch: `[{"op":"remove","path":"/a/1"}]`, want: `{"a":[1,3],"o":{"l":[{"x":1}]}}`},
		{patch: `[{"op":"replace","path":"/o/l/0/x","value":2}]`, want: `{"a":[1,2,3],"o":{"l":[{"x":2}]}}`},
		{patch: `[{"op":"replace","path":"/a/3","value":9}]`, errSeg: "3"},
		{patch: `[{"op":"remove","path":"/a/-"}]`, errSeg: "-"},
		{patch: `[{"op":"add","path":"/a/01","value":9}]`, errSeg: "01"},
		{patch: `[{"op":"add","path":"/a/5","value":9}]`, errSeg: "5"},
		{patch: `[{"op":"add","path":"/o/l/1/x","value":9}]`, errSeg: "1"},
	}
	for _, tt := range tests {
		doc := decodeMap(t, `{"a":[1,2,3],"o":{"l":[{"x":1}]}}`)
		p, err := ParsePatch([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		err = applyPointer(doc, p[0].Segments, p[0], false)
		if tt.errSeg != "" {
			wantError(t, err, KindJSONPatchInvalid, "The target location specified by path segment '"+tt.errSeg+"' was not found."+help)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.patch, err)
		}
		sameJSON(t, doc, tt.want)
	}
}

func TestApplyTwinPatchCreateParents(t *testing.T) {
	tests := []struct {
		patch, want, errSeg string
	}{
		// Missing objects along an add's path are created, at the twin and in a component.
		{patch: `[{"op":"add","path":"/o/p/q","value":1}]`, want: `{"o":{"p":{"q":1}},"therm":{"t":1}}`},
		{patch: `[{"op":"add","path":"/therm/s/v","value":2}]`, want: `{"therm":{"t":1,"s":{"v":2}}}`},
		// An existing parent is kept and its other members with it.
		{patch: `[{"op":"add","path":"/o/x","value":1},{"op":"add","path":"/o/y","value":2}]`, want: `{"o":{"x":1,"y":2}}`},
		// Replace and remove still need their target, and arrays are not grown.
		{patch: `[{"op":"replace","path":"/n/v","value":1}]`, errSeg: "n"},
		{patch: `[{"op":"remove","path":"/n/v"}]`, errSeg: "n"},
		{patch: `[{"op":"add","path":"/l/1/v","value":1}]`, errSeg: "1"},
	}
	for _, tt := range tests {
		doc := decodeMap(t, `{"$dtId":"a","$metadata":{"$model":"dtmi:a;1"},"l":[{}],"therm":{"t":1,"$metadata":{}}}`)
		p, err := ParsePatch([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		err = ApplyTwinPatch(doc, p, Schema{IsComponent: isComp, CreateParents: true}, t1)
		if tt.errSeg != "" {
			wantError(t, err, KindJSONPatchInvalid, "The target location specified by path segment '"+tt.errSeg+"' was not found."+help)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.patch, err)
		}
		for k, v := range decodeMap(t, tt.want) {
			got, _ := Encode(doc[k])
			if k == "therm" {
				delete(doc[k].(map[string]any), KeyMetadata)
				got, _ = Encode(doc[k])
			}
			want, _ := Encode(v)
			if string(got) != string(want) {
				t.Errorf("%s: %s = %s, want %s", tt.patch, k, got, want)
			}
		}
	}
	// Without CreateParents a missing parent fails the patch, as in ADT.
	p, _ := ParsePatch([]byte(`[{"op":"add","path":"/o/p","value":1}]`))
	err := ApplyTwinPatch(decodeMap(t, `{"$metadata":{}}`), p, Schema{}, t1)
	wantError(t, err, KindJSONPatchInvalid, "The target location specified by path segment 'o' was not found."+help)
}

func TestApplyTwinPatchDoesNotAliasThePatch(t *testing.T) {
	doc := decodeMap(t, baseDoc)
	p, err := ParsePatch([]byte(`[{"op":"add","path":"/loc","value":{"x":1}},{"op":"add","path":"/loc/y","value":2},
		{"op":"replace","path":"/therm","value":{"sp":{"a":1}}},{"op":"add","path":"/therm/sp/b","value":2}]`))
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyTwinPatch(doc, p, Schema{IsComponent: isComp}, t1); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(p)
	want := `[{"op":"add","path":"/loc","value":{"x":1}},{"op":"add","path":"/loc/y","value":2},{"op":"replace","path":"/therm","value":{"sp":{"a":1}}},{"op":"add","path":"/therm/sp/b","value":2}]`
	if string(got) != want {
		t.Fatalf("patch after apply = %s", got)
	}
	sameJSON(t, doc["loc"], `{"x":1,"y":2}`)
}
