package dtdl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestQuantitativeTypesMatchMetamodel checks the QuantitativeTypes table, transcribed from the
// extension's specification, against the extension's metamodel in the conformance corpus: the
// same semantic types, each a child of the same unit type, and each unit type an Enum of the
// same units.
func TestQuantitativeTypesMatchMetamodel(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "v3", "metamodel")
	var elements []struct {
		ID         string `json:"@id"`
		Type       string `json:"@type"`
		EnumValues []struct {
			Name      string `json:"name"`
			EnumValue string `json:"enumValue"`
		} `json:"enumValues"`
	}
	readJSON(t, filepath.Join(dir, "DTDL.FeatureExtension.quantitativeTypes.v1.Elements.json"), &elements)
	var shacl struct {
		Graph []struct {
			ID         string `json:"@id"`
			SubClassOf string `json:"rdfs:subClassOf"`
			Property   []struct {
				Path    string `json:"sh:path"`
				ChildOf string `json:"dtmm:childOf"`
			} `json:"sh:property"`
		} `json:"@graph"`
	}
	readJSON(t, filepath.Join(dir, "DTDL.FeatureExtension.quantitativeTypes.v1.RDF-SHACL.json"), &shacl)

	unitsOf := map[string][]string{} // unit type term -> unit terms, sorted
	for _, e := range elements {
		term, ok := strings.CutPrefix(e.ID, quantPrefix+"enum:")
		if !ok || !strings.HasSuffix(term, "Unit") && term != "Unitless" {
			continue // the prefix enums
		}
		for _, v := range e.EnumValues {
			if v.Name != v.EnumValue {
				t.Errorf("%s: unit %q has enum value %q", term, v.Name, v.EnumValue)
			}
			unitsOf[term] = append(unitsOf[term], v.Name)
		}
		slices.Sort(unitsOf[term])
	}
	unitTypeOf := map[string]string{} // semantic type term -> unit type term
	for _, c := range shacl.Graph {
		if c.SubClassOf != "QuantitativeType" {
			continue
		}
		term := strings.TrimPrefix(c.ID, quantPrefix+"class:")
		for _, p := range c.Property {
			if p.Path == "unit" {
				unitTypeOf[term] = p.ChildOf
			}
		}
	}

	seen := map[string]bool{}
	for _, row := range semanticTypesQuant {
		seen[row.semanticType] = true
		if got := unitTypeOf[row.semanticType]; got != row.unitType {
			t.Errorf("%s: unit type %s, metamodel says %q", row.semanticType, row.unitType, got)
		}
		if want := unitsOf[row.unitType]; !slices.Equal(row.units, want) {
			t.Errorf("%s: units %v, metamodel's %s has %v", row.semanticType, row.units, row.unitType, want)
		}
		s := vocab.unitTypes[quantPrefix+"enum:"+row.unitType]
		if s == nil || len(s.EnumValues) != len(row.units) {
			t.Errorf("%s: no Enum schema with its %d units", row.unitType, len(row.units))
		}
	}
	for term := range unitTypeOf {
		if !seen[term] {
			t.Errorf("semantic type %s of the metamodel is missing from the table", term)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(trimBOM(data), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
