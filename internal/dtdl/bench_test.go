package dtdl

import (
	"fmt"
	"strings"
	"testing"
)

// chainModels returns one JSON array document with chains×depth v3 Interfaces: each chain is
// an extends chain of the given depth, every Interface has a few properties, a relationship
// and Enum- and Object-typed properties, and every Interface but the first of its chain has a
// component whose schema is that first Interface.
func chainModels(chains, depth int) []byte {
	var b strings.Builder
	b.WriteString("[")
	for c := range chains {
		for d := range depth {
			if c+d > 0 {
				b.WriteString(",")
			}
			id := fmt.Sprintf("dtmi:bench:chain%d:level%d;1", c, d)
			fmt.Fprintf(&b, `{"@context":"dtmi:dtdl:context;3","@id":%q,"@type":"Interface","displayName":"Level %d",`, id, d)
			if d > 0 {
				fmt.Fprintf(&b, `"extends":"dtmi:bench:chain%d:level%d;1",`, c, d-1)
			}
			b.WriteString(`"contents":[`)
			fmt.Fprintf(&b, `{"@type":"Property","name":"name%d","schema":"string","writable":true},`, d)
			fmt.Fprintf(&b, `{"@type":"Property","name":"temperature%d","schema":"double"},`, d)
			fmt.Fprintf(&b, `{"@type":"Telemetry","name":"reading%d","schema":"float"},`, d)
			fmt.Fprintf(&b, `{"@type":"Relationship","name":"feeds%d","target":"dtmi:bench:chain%d:level0;1","properties":[{"@type":"Property","name":"since","schema":"dateTime"}]},`, d, c)
			fmt.Fprintf(&b, `{"@type":"Property","name":"mode%d","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[{"name":"off","enumValue":0},{"name":"on","enumValue":1}]}},`, d)
			fmt.Fprintf(&b, `{"@type":"Property","name":"settings%d","schema":{"@type":"Object","fields":[{"name":"low","schema":"double"},{"name":"high","schema":"double"},{"name":"labels","schema":{"@type":"Map","mapKey":{"name":"k","schema":"string"},"mapValue":{"name":"v","schema":"string"}}}]}}`, d)
			if d > 0 {
				fmt.Fprintf(&b, `,{"@type":"Component","name":"part%d","schema":"dtmi:bench:chain%d:level0;1"}`, d, c)
			}
			b.WriteString("]}")
		}
	}
	b.WriteString("]")
	return []byte(b.String())
}

func TestChainModelsParse(t *testing.T) {
	s := mustParse(t, nil, chainModels(3, 10))
	if s.Len() != 30 {
		t.Fatalf("Len = %d, want 30", s.Len())
	}
	top, _ := s.Interface("dtmi:bench:chain2:level9;1")
	if len(top.Properties) != 40 || len(s.Ancestors(top.ID)) != 9 || len(top.Components) != 9 {
		t.Errorf("level 9: %d properties, %d ancestors, %d components", len(top.Properties), len(s.Ancestors(top.ID)), len(top.Components))
	}
}

// BenchmarkParseResolve1000 parses and resolves 1,000 Interfaces in 100 extends chains of
// depth 10.
func BenchmarkParseResolve1000(b *testing.B) {
	doc := chainModels(100, 10)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := Parse([][]byte{doc}, nil, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 1000 {
			b.Fatalf("Len = %d", s.Len())
		}
	}
}

// BenchmarkParseResolve10000 parses and resolves 10,000 Interfaces in 1,000 extends chains of
// depth 10, as a server does for all stored models at start.
func BenchmarkParseResolve10000(b *testing.B) {
	doc := chainModels(1000, 10)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse([][]byte{doc}, nil, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
