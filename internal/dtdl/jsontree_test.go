package dtdl

import (
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	doc := "\uFEFF" + `{"b":[1,-2.5e3,true,false,null],"a":"x\"\u00e9\ud83d\ude00\n","n":{}}`
	n, err := decodeJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if n.kind != jsonObject || len(n.members) != 3 || n.members[0].key != "b" || n.members[1].key != "a" {
		t.Fatalf("members out of document order: %+v", n.members)
	}
	items := n.member("b").items
	wantKinds := []jsonKind{jsonNumber, jsonNumber, jsonBool, jsonBool, jsonNull}
	for i, k := range wantKinds {
		if items[i].kind != k {
			t.Errorf("item %d kind %v, want %v", i, items[i].kind, k)
		}
	}
	if items[1].text != "-2.5e3" || !items[2].boolean || items[3].boolean {
		t.Errorf("items = %q %v %v", items[1].text, items[2].boolean, items[3].boolean)
	}
	if got := n.member("a").text; got != "x\"é😀\n" {
		t.Errorf("string = %q", got)
	}
	if n.start != 0 || n.end != len(doc)-3 {
		t.Errorf("span = %d..%d, want 0..%d", n.start, n.end, len(doc)-3)
	}
	for _, bad := range []string{`{"a":}`, `[1,]`, `"\x"`, `{"a":1}{`, strings.Repeat("[", 300) + strings.Repeat("]", 300)} {
		if _, err := decodeJSON([]byte(bad)); err == nil {
			t.Errorf("decodeJSON(%.20q) succeeded", bad)
		}
	}
}
