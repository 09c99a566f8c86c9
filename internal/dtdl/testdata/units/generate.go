//go:build ignore

// Generate writes the model batches of TestUnitOverrideGolden: for every row of the semantic
// type table of the QuantitativeTypes extension, <SemanticType>.json (valid: Overrides of the
// unit of a Telemetry and of a Property, own and inherited, by term and by IRI) and
// <SemanticType>-invalid.json (an Override whose schema is another unit type, by term and by
// IRI; two Overrides of one unit; an Override of an element without a unit).
//
// The table is read from the extension's specification text, not from the parser's tables, so
// that the cases test those tables too:
//
//	go run testdata/units/generate.go -spec DIR/DTDL.quantitativeTypes.v1.md
//
// The .golden files beside the batches are written by the test (-update) and reviewed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// row is one row of the specification's table.
type row struct {
	semanticType, unitType string
	units                  []string
}

var rowPattern = regexp.MustCompile("^\\| `(\\w+)` \\| `(\\w+)` \\| (.*) \\|$")

// readTable reads the semantic type table from the specification's Markdown.
func readTable(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := rowPattern.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		r := row{semanticType: m[1], unitType: m[2]}
		for _, u := range strings.Split(m[3], "<br>") {
			r.units = append(r.units, strings.Trim(strings.TrimSpace(u), "`"))
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no semantic type table found", path)
	}
	return rows, nil
}

// obj is a JSON object whose members keep the order they are given in.
type obj []any

func (o obj) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(o); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(o[i])
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(o[i+1])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

const (
	quant    = "dtmi:dtdl:extension:quantitativeTypes:v1:"
	unitIRI  = quant + "property:unit"
	idPrefix = "dtmi:example:units:"
)

var contexts = []string{
	"dtmi:dtdl:context;3",
	"dtmi:dtdl:extension:quantitativeTypes;1",
	"dtmi:dtdl:extension:annotation;1",
	"dtmi:dtdl:extension:overriding;1",
}

func iface(id string, extends string, contents ...obj) obj {
	o := obj{"@context", contexts, "@id", id, "@type", "Interface"}
	if extends != "" {
		o = append(o, "extends", extends)
	}
	return append(o, "contents", contents)
}

func quantity(class, semanticType, name, schema, unit string) obj {
	return obj{"@type", []string{class, semanticType}, "name", name, "schema", schema, "unit", unit}
}

func override(name, annotates, overrides, schema string) obj {
	return obj{"@type", []string{"Property", "ValueAnnotation", "Override"}, "name", name,
		"annotates", annotates, "overrides", overrides, "schema", schema, "writable", true}
}

// valid returns a batch in which every Override is right.
func valid(r row) []obj {
	base := idPrefix + r.semanticType + ":Base;1"
	last := r.units[len(r.units)-1]
	return []obj{
		iface(base, "",
			quantity("Telemetry", r.semanticType, "reading", "double", r.units[0]),
			quantity("Property", r.semanticType, "setPoint", "float", last),
			override("readingUnit", "reading", "unit", r.unitType),
		),
		iface(idPrefix+r.semanticType+";1", base,
			override("setPointUnit", "setPoint", unitIRI, quant+"enum:"+r.unitType),
		),
	}
}

// invalid returns a batch whose Overrides break the rules; other is a unit type that is not
// r's.
func invalid(r row, other string) []obj {
	base := idPrefix + r.semanticType + ":InvalidBase;1"
	return []obj{
		iface(base, "",
			quantity("Telemetry", r.semanticType, "reading", "double", r.units[0]),
			quantity("Property", r.semanticType, "setPoint", "float", r.units[len(r.units)-1]),
		),
		iface(idPrefix+r.semanticType+":Invalid;1", base,
			override("readingUnit", "reading", "unit", other),
			override("readingUnitAgain", "reading", "unit", r.unitType),
			override("setPointUnit", "setPoint", "unit", quant+"enum:"+other),
			obj{"@type", "Property", "name", "plain", "schema", "double"},
			override("plainUnit", "plain", "unit", r.unitType),
		),
	}
}

// write writes a batch with one member of an Interface, and one content, per line.
func write(path string, batch []obj) error {
	var b strings.Builder
	b.WriteString("[\n")
	for i, in := range batch {
		b.WriteString("  {\n")
		for j := 0; j+1 < len(in); j += 2 {
			k, err := json.Marshal(in[j])
			if err != nil {
				return err
			}
			b.WriteString("    " + string(k) + ": ")
			if contents, ok := in[j+1].([]obj); ok {
				b.WriteString("[\n")
				for n, c := range contents {
					v, err := json.Marshal(c)
					if err != nil {
						return err
					}
					b.WriteString("      " + string(v))
					if n < len(contents)-1 {
						b.WriteByte(',')
					}
					b.WriteByte('\n')
				}
				b.WriteString("    ]")
			} else {
				v, err := json.Marshal(in[j+1])
				if err != nil {
					return err
				}
				b.Write(v)
			}
			if j+2 < len(in) {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("  }")
		if i < len(batch)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func main() {
	spec := flag.String("spec", "", "path of DTDL.quantitativeTypes.v1.md")
	out := flag.String("out", "testdata/units", "directory to write the batches to")
	flag.Parse()
	rows, err := readTable(*spec)
	if err != nil {
		log.Fatal(err)
	}
	for i, r := range rows {
		// The other unit type is the next row's that differs from r's.
		other := ""
		for j := 1; other == ""; j++ {
			if u := rows[(i+j)%len(rows)].unitType; u != r.unitType {
				other = u
			}
		}
		if err := write(filepath.Join(*out, r.semanticType+".json"), valid(r)); err != nil {
			log.Fatal(err)
		}
		if err := write(filepath.Join(*out, r.semanticType+"-invalid.json"), invalid(r, other)); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("wrote %d semantic types\n", len(rows))
}
