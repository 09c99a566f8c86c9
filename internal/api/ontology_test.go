package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/twins"
)

// ontologyQuantities lists the QuantitativeTypes semantic types, each with its unit type and
// two of its units.
const ontologyQuantities = `Acceleration AccelerationUnit metrePerSecondSquared gForce
Angle AngleUnit degreeOfArc radian
AngularAcceleration AngularAccelerationUnit radianPerSecondSquared radianPerSecondSquared
AngularVelocity AngularVelocityUnit radianPerSecond revolutionPerMinute
ApparentEnergy ApparentEnergyUnit kilovoltAmpereHour voltAmpereHour
ApparentPower ApparentPowerUnit kilovoltAmpere voltAmpere
Area AreaUnit squareMetre squareFoot
Capacitance CapacitanceUnit farad microfarad
Concentration Unitless partsPerMillion percent
Current CurrentUnit ampere milliampere
DataRate DataRateUnit bitPerSecond mebibytePerSecond
DataSize DataSizeUnit byte gibibyte
Density DensityUnit kilogramPerCubicMetre gramPerCubicMetre
Distance LengthUnit metre mile
ElectricCharge ChargeUnit coulomb ampereHour
Energy EnergyUnit kilowattHour joule
EnergyRate PowerUnit kilowatt britishThermalUnitPerHour
Force ForceUnit newton pound
Frequency FrequencyUnit hertz kilohertz
Humidity DensityUnit gramPerCubicMetre milligramPerCubicMetre
Illuminance IlluminanceUnit lux footcandle
Inductance InductanceUnit henry millihenry
IonizingRadiationDose IonizingRadiationDoseUnit gray sievert
Irradiance IrradianceUnit wattPerSquareMetre wattPerSquareMetre
Latitude AngleUnit degreeOfArc radian
Length LengthUnit metre foot
Longitude AngleUnit degreeOfArc turn
Luminance LuminanceUnit candelaPerSquareMetre candelaPerSquareMetre
Luminosity PowerUnit watt milliwatt
LuminousFlux LuminousFluxUnit lumen lumen
LuminousIntensity LuminousIntensityUnit candela candela
MagneticFlux MagneticFluxUnit weber maxwell
MagneticInduction MagneticInductionUnit tesla gauss
Mass MassUnit kilogram massPound
MassFlowRate MassFlowRateUnit kilogramPerSecond gramPerHour
Power PowerUnit watt horsepower
Pressure PressureUnit pascal poundPerSquareInch
Radioactivity RadioactivityUnit becquerel kilobecquerel
ReactiveEnergy ReactiveEnergyUnit voltAmpereReactiveHour kilovoltAmpereReactiveHour
ReactivePower ReactivePowerUnit voltAmpereReactive kilovoltAmpereReactive
RelativeDensity Unitless unity percent
RelativeHumidity Unitless percent unity
Resistance ResistanceUnit ohm kiloohm
SoundPressure SoundPressureUnit decibel bel
Temperature TemperatureUnit degreeCelsius degreeFahrenheit
Thrust ForceUnit newton ton
TimeSpan TimeUnit second hour
Torque TorqueUnit newtonMetre newtonMetre
Velocity VelocityUnit metrePerSecond knot
Voltage VoltageUnit volt kilovolt
Volume VolumeUnit cubicMetre litre
VolumeFlowRate VolumeFlowRateUnit cubicMetrePerHour litrePerSecond`

// quantity is a semantic type with its unit type and two of its units.
type quantity struct{ semantic, unitType, unit, otherUnit string }

func quantities() []quantity {
	var out []quantity
	for _, line := range strings.Split(ontologyQuantities, "\n") {
		f := strings.Fields(line)
		out = append(out, quantity{f[0], f[1], f[2], f[3]})
	}
	return out
}

// measured returns the quantity of the Telemetry of Interface i of an ontology.
func measured(qs []quantity, i int) quantity { return qs[i%len(qs)] }

// set returns the quantity of the semantically typed Property of Interface i of an ontology.
func set(qs []quantity, i int) quantity { return qs[(i*7+3)%len(qs)] }

// ontologyMixins is how many of an ontology's Interfaces are mixins: Interfaces that extend
// nothing and that others extend as a second parent.
const ontologyMixins = 16

// ontologyID returns the DTMI of Interface i of an ontology.
func ontologyID(i int) string {
	if i < ontologyMixins {
		return fmt.Sprintf("dtmi:test:ontology:Mixin%d;1", i)
	}
	return fmt.Sprintf("dtmi:test:ontology:Class%d;1", i)
}

// ontologyParent returns the tree parent of Interface i, or -1 for a root or a mixin. Eight
// roots each head a tree in which every Interface has three children, so that the 3,000th
// Interface is seven levels deep.
func ontologyParent(i int) int {
	if i < ontologyMixins+8 {
		return -1
	}
	return ontologyMixins + (i-ontologyMixins-8)/3
}

// ontology returns n DTDL v3 Interfaces, parents before children, in the shape of the large
// building ontologies made for ADT: every Interface has a semantically typed Telemetry and
// Property of one of the QuantitativeTypes semantic types in turn, overrides the Telemetry's
// unit and its tree parent's Property's unit with Properties co-typed ValueAnnotation and
// Override (by term and by IRI in turn), and some annotate a Telemetry, extend a mixin as a
// second parent, are Historized or hold a Relationship to an earlier Interface whose
// properties override a unit too.
func ontology(n int) []string {
	qs := quantities()
	q := func(i int) quantity { return measured(qs, i) }
	q2 := func(i int) quantity { return set(qs, i) }
	override := func(name, annotates string, qt quantity, iri bool) string {
		overrides, schema := "unit", qt.unitType
		if iri {
			overrides = "dtmi:dtdl:extension:quantitativeTypes:v1:property:unit"
			schema = "dtmi:dtdl:extension:quantitativeTypes:v1:enum:" + qt.unitType
		}
		return fmt.Sprintf(`{"@type":["Property","ValueAnnotation","Override"],"name":%q,"annotates":%q,"overrides":%q,"schema":%q,"writable":true}`,
			name, annotates, overrides, schema)
	}
	docs := make([]string, n)
	for i := range n {
		var contents []string
		var extends []string
		if i < ontologyMixins {
			contents = append(contents,
				fmt.Sprintf(`{"@type":"Property","name":"tag%d","schema":"string","writable":true}`, i),
				fmt.Sprintf(`{"@type":["Telemetry",%q],"name":"x%d","schema":"double","unit":%q}`, q(i).semantic, i, q(i).unit),
				override(fmt.Sprintf("x%dUnit", i), fmt.Sprintf("x%d", i), q(i), false))
		} else {
			label := `"Property"`
			if i%5 == 0 {
				label = `["Property","Historized"]`
			}
			contents = append(contents,
				fmt.Sprintf(`{"@type":%s,"name":"label%d","schema":"string","writable":true}`, label, i),
				fmt.Sprintf(`{"@type":["Telemetry",%q],"name":"m%d","schema":"double","unit":%q}`, q(i).semantic, i, q(i).unit),
				override(fmt.Sprintf("m%dUnit", i), fmt.Sprintf("m%d", i), q(i), i%2 == 1),
				fmt.Sprintf(`{"@type":["Property",%q],"name":"s%d","schema":"float","unit":%q,"writable":true}`, q2(i).semantic, i, q2(i).unit))
			if p := ontologyParent(i); p >= 0 {
				extends = append(extends, ontologyID(p))
				contents = append(contents, override(fmt.Sprintf("s%dUnit%d", p, i), fmt.Sprintf("s%d", p), q2(p), i%2 == 0))
			}
			if i%10 == 5 {
				extends = append(extends, ontologyID(i%ontologyMixins))
			}
			if i%4 == 0 {
				contents = append(contents, fmt.Sprintf(`{"@type":["Telemetry","ValueAnnotation"],"name":"m%dAccuracy","annotates":"m%d","schema":"double"}`, i, i))
			}
			if i%2 == 0 && i/2 >= ontologyMixins {
				r := q(i / 2)
				contents = append(contents, fmt.Sprintf(`{"@type":"Relationship","name":"feeds%d","target":%q,"properties":[`+
					`{"@type":["Property",%q],"name":"rate","schema":"double","unit":%q},%s]}`,
					i, ontologyID(i/2), r.semantic, r.unit, override("rateUnit", "rate", r, false)))
			}
		}
		ext := ""
		if len(extends) > 0 {
			b, _ := json.Marshal(extends)
			ext = `"extends":` + string(b) + ","
		}
		docs[i] = fmt.Sprintf(`{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1",`+
			`"dtmi:dtdl:extension:historization;1","dtmi:dtdl:extension:annotation;1","dtmi:dtdl:extension:overriding;1"],`+
			`"@id":%q,"@type":"Interface","displayName":{"en":"Class %d"},"description":{"en":"Interface %d of a generated ontology."},%s"contents":[%s]}`,
			ontologyID(i), i, i, ext, strings.Join(contents, ","))
	}
	return docs
}

// uploadOntology uploads docs with POST /models, batch models per call, in order.
func uploadOntology(tb testing.TB, e *env, docs []string, batch int) {
	tb.Helper()
	for start := 0; start < len(docs); start += batch {
		end := min(start+batch, len(docs))
		r := e.do(http.MethodPost, "/models", "["+strings.Join(docs[start:end], ",")+"]")
		if r.status != http.StatusCreated {
			tb.Fatalf("POST /models of models %d to %d: status %d, body %.2000s", start, end-1, r.status, r.body)
		}
	}
}

// TestLargeOntologyUpload uploads an ontology of 3,200 Interfaces that uses the
// QuantitativeTypes, Annotation and Overriding extensions, 250 models per call as ADT allows,
// and checks that twins and relationships of its models are validated against the unit types
// their overriding properties name, and that a restarted service resolves the stored models.
func TestLargeOntologyUpload(t *testing.T) {
	const n = 3200
	e := newEnv(t, Config{})
	docs := ontology(n)
	uploadOntology(t, e, docs, 250)

	// A deep Interface: Class3198, seven levels down its tree, with a relationship.
	const leaf = n - 2
	qs := quantities()
	leafQ, setQ := measured(qs, leaf), set(qs, leaf)
	// other is a unit type that is neither of the leaf's.
	var other quantity
	for _, o := range qs {
		if o.unitType != leafQ.unitType && o.unitType != setQ.unitType {
			other = o
			break
		}
	}
	own := fmt.Sprintf("m%dUnit", leaf)
	inheritedName := fmt.Sprintf("m%dUnit", ontologyParent(leaf))
	inheritedQ := measured(qs, ontologyParent(leaf))
	twin := func(props string) string {
		return fmt.Sprintf(`{"$metadata":{"$model":%q}%s}`, ontologyID(leaf), props)
	}

	e.must(e.do(http.MethodPut, "/digitaltwins/leaf", twin(fmt.Sprintf(`,%q:%q,%q:%q`, own, leafQ.otherUnit, inheritedName, inheritedQ.otherUnit))), http.StatusOK, "")
	got := decode[map[string]any](t, e.must(e.do(http.MethodGet, "/digitaltwins/leaf", ""), http.StatusOK, ""))
	if got[own] != leafQ.otherUnit || got[inheritedName] != inheritedQ.otherUnit {
		t.Fatalf("stored twin = %v", got)
	}
	for _, bad := range []string{`"furlong"`, fmt.Sprintf("%q", other.unit), fmt.Sprintf("%q", strings.ToUpper(leafQ.unit)), "1"} {
		e.must(e.do(http.MethodPut, "/digitaltwins/bad", twin(fmt.Sprintf(`,%q:%s`, own, bad))), http.StatusBadRequest, "ValidationFailed")
		e.must(e.do(http.MethodPatch, "/digitaltwins/leaf", fmt.Sprintf(`[{"op":"replace","path":"/%s","value":%s}]`, own, bad)), http.StatusBadRequest, "ValidationFailed")
	}
	e.must(e.do(http.MethodGet, "/digitaltwins/bad", ""), http.StatusNotFound, "DigitalTwinNotFound")
	if got := decode[map[string]any](t, e.do(http.MethodGet, "/digitaltwins/leaf", "")); got[own] != leafQ.otherUnit {
		t.Fatalf("after refused patches %s = %v, want %s", own, got[own], leafQ.otherUnit)
	}
	e.must(e.do(http.MethodPatch, "/digitaltwins/leaf", fmt.Sprintf(`[{"op":"replace","path":"/%s","value":%q}]`, own, leafQ.unit)), http.StatusNoContent, "")
	got = decode[map[string]any](t, e.must(e.do(http.MethodGet, "/digitaltwins/leaf", ""), http.StatusOK, ""))
	if got[own] != leafQ.unit {
		t.Fatalf("after the patch %s = %v, want %s", own, got[own], leafQ.unit)
	}

	// The leaf's relationship feeds<leaf> targets Class<leaf/2>; its rateUnit overrides the unit
	// of its rate property.
	e.must(e.do(http.MethodPut, "/digitaltwins/target", fmt.Sprintf(`{"$metadata":{"$model":%q}}`, ontologyID(leaf/2))), http.StatusOK, "")
	relQ := measured(qs, leaf/2)
	rel := func(unit string) string {
		return fmt.Sprintf(`{"$targetId":"target","$relationshipName":"feeds%d","rate":1.5,"rateUnit":%q}`, leaf, unit)
	}
	e.must(e.do(http.MethodPut, "/digitaltwins/leaf/relationships/bad", rel("furlong")), http.StatusBadRequest, "ValidationFailed")
	e.must(e.do(http.MethodPut, "/digitaltwins/leaf/relationships/r1", rel(relQ.otherUnit)), http.StatusOK, "")

	// An Override whose schema is not the unit type of the annotated element's unit is refused,
	// and nothing of its batch is stored.
	wrong := fmt.Sprintf(`[{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:extension:annotation;1","dtmi:dtdl:extension:overriding;1"],`+
		`"@id":"dtmi:test:ontology:Wrong;1","@type":"Interface","extends":%q,"contents":[`+
		`{"@type":["Property","ValueAnnotation","Override"],"name":"again","annotates":"s%d","overrides":"unit","schema":%q}]}]`,
		ontologyID(leaf), leaf, other.unitType)
	r := e.must(e.do(http.MethodPost, "/models", wrong), http.StatusBadRequest, "DTDLParserError")
	want := fmt.Sprintf(`must be %s, the unit type of \"s%d\"'s unit %s, not %s`, setQ.unitType, leaf, setQ.unit, other.unitType)
	if !strings.Contains(string(r.body), want) {
		t.Errorf("error body %s does not say %s", r.body, want)
	}
	e.must(e.do(http.MethodGet, "/models/dtmi:test:ontology:Wrong;1", ""), http.StatusNotFound, "ModelNotFound")

	// A restart resolves every stored model in one batch.
	s, err := twins.New(twins.Config{ServiceID: testHost}, e.store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := s.Models().Len(); got != n {
		t.Fatalf("after a restart %d models, want %d", got, n)
	}
	i, _ := s.Models().Interface(ontologyID(leaf))
	if err := i.ValidateTwin(map[string]any{own: "furlong"}); err == nil {
		t.Error("after a restart an unknown unit name was accepted")
	}
}
