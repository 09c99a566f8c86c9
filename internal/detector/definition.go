package detector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/query"
	"github.com/twinflow/twinflow/internal/source"
)

// ErrInvalid is wrapped by every error Parse returns; the message after it lists each problem
// on a line of its own.
var ErrInvalid = errors.New("invalid detector definition")

// ErrNameInvalid is returned (wrapped) for a detector name that is not 1 to 64 letters,
// digits, '-' or '_' (the names of sources).
var ErrNameInvalid = errors.New("invalid detector name")

// ValidName reports whether name is a valid detector name (see ErrNameInvalid).
func ValidName(name string) bool { return source.ValidName(name) }

// Definition is a detector as PUT /detectors/{name} takes it.
type Definition struct {
	// Twins is an ADT query over DIGITALTWINS alone (no JOIN or MATCH) that selects whole
	// twins (SELECT * or SELECT of its alias): the twins whose properties are scored.
	Twins string `json:"twins"`
	// Properties are the names of the numeric top-level properties scored, at least one.
	Properties []string `json:"properties"`
	// Method is the package anomaly method: auto (the default), residual or change.
	Method anomaly.Method `json:"method"`
	// Sensitivity in (0, 1]: a point is an anomaly when its score is at least
	// 1 − Sensitivity. Default anomaly.DefaultSensitivity.
	Sensitivity float64 `json:"sensitivity"`
	// WarmUp is the number of points of a series scored 0 while its model learns; default
	// DefaultWarmUp.
	WarmUp int `json:"warmUp"`
	// Peers compares each point of a twin with the latest values of the same property of its
	// siblings among the twins watched (the package anomaly peer test); by default on for
	// method auto, off for the others.
	Peers bool `json:"peers"`
}

// DefaultWarmUp is the warm-up of a definition that sets none (anomaly.Config's default).
const DefaultWarmUp = 100

// MaxProperties is the most properties one detector scores.
const MaxProperties = 32

// Parse decodes and checks a definition, and fills in its defaults. Every problem is reported,
// each on a line of its own after ErrInvalid.
func Parse(body []byte) (Definition, error) {
	var raw struct {
		Twins       *string         `json:"twins"`
		Properties  []string        `json:"properties"`
		Method      *anomaly.Method `json:"method"`
		Sensitivity *float64        `json:"sensitivity"`
		WarmUp      *int            `json:"warmUp"`
		Peers       *bool           `json:"peers"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Definition{}, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	var (
		d        Definition
		problems []string
	)
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if raw.Twins == nil || strings.TrimSpace(*raw.Twins) == "" {
		bad("twins: a query selecting the twins to watch is required, such as SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:example:Room;1')")
	} else {
		d.Twins = *raw.Twins
		if _, err := prepare(d.Twins); err != nil {
			bad("twins: %v", err)
		}
	}
	if len(raw.Properties) == 0 {
		bad("properties: at least one property name is required")
	}
	if len(raw.Properties) > MaxProperties {
		bad("properties: %d names; at most %d are allowed", len(raw.Properties), MaxProperties)
	}
	seen := make(map[string]bool, len(raw.Properties))
	for i, p := range raw.Properties {
		switch {
		case p == "" || strings.HasPrefix(p, "$") || strings.ContainsAny(p, "/~"):
			bad("properties[%d]: %q is not the name of a top-level property", i, p)
		case seen[p]:
			bad("properties[%d]: %q is named twice", i, p)
		}
		seen[p] = true
	}
	d.Properties = raw.Properties
	d.Method = anomaly.MethodAuto
	if raw.Method != nil {
		d.Method = *raw.Method
	}
	switch d.Method {
	case anomaly.MethodAuto, anomaly.MethodResidual, anomaly.MethodChange:
	default:
		bad("method: %q is not one of %q, %q and %q", d.Method, anomaly.MethodAuto, anomaly.MethodResidual, anomaly.MethodChange)
	}
	d.Sensitivity = anomaly.DefaultSensitivity
	if raw.Sensitivity != nil {
		d.Sensitivity = *raw.Sensitivity
		if !(d.Sensitivity > 0 && d.Sensitivity <= 1) {
			bad("sensitivity: %v is not in (0, 1]", d.Sensitivity)
		}
	}
	d.WarmUp = DefaultWarmUp
	if raw.WarmUp != nil {
		d.WarmUp = *raw.WarmUp
		if d.WarmUp < 1 || d.WarmUp > 100000 {
			bad("warmUp: %d is not in [1, 100000]", d.WarmUp)
		}
	}
	d.Peers = d.Method == anomaly.MethodAuto
	if raw.Peers != nil {
		d.Peers = *raw.Peers
	}
	if len(problems) > 0 {
		return Definition{}, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "\n"))
	}
	return d, nil
}

// config returns the configuration of the detectors of d's series.
func (d Definition) config() anomaly.Config {
	return anomaly.Config{Sensitivity: d.Sensitivity, Method: d.Method, WarmUp: d.WarmUp}
}

// newDetector returns a fresh detector of one of d's series.
func (d Definition) newDetector() *anomaly.Detector {
	det, err := anomaly.New(d.config())
	if err != nil {
		// Parse checked every field anomaly.New checks.
		panic(fmt.Sprintf("detector: a parsed definition is refused: %v", err))
	}
	return det
}

// watches reports whether d scores property key.
func (d Definition) watches(key string) bool {
	for _, p := range d.Properties {
		if p == key {
			return true
		}
	}
	return false
}

// selection is a prepared twins query and where its rows hold the twin: the whole row for
// SELECT *, or the member of the selected alias.
type selection struct {
	q     *query.Prepared
	alias string
}

// prepare checks that text is a query a detector can watch: one DIGITALTWINS collection,
// whole twins selected.
func prepare(text string) (selection, error) {
	p, err := query.Prepare(text)
	if err != nil {
		return selection{}, err
	}
	q := p.Query()
	switch {
	case q.From.Relationships:
		return selection{}, errors.New("the query must select twins (FROM DIGITALTWINS), not relationships")
	case len(q.From.Joins) > 0 || q.From.Match != nil:
		return selection{}, errors.New("the query must select from DIGITALTWINS alone, without JOIN or MATCH")
	case q.Select.Count:
		return selection{}, errors.New("the query must select twins, not COUNT()")
	case q.Select.Top > 0:
		return selection{}, errors.New("the query must select every matching twin, without TOP")
	case q.Select.Star:
		return selection{q: p}, nil
	case len(q.Select.Items) == 1 && q.Select.Items[0].As == "" && q.From.Alias != "" &&
		q.Select.Items[0].Path != nil && len(q.Select.Items[0].Path.Names) == 1 && q.Select.Items[0].Path.Names[0] == q.From.Alias:
		return selection{q: p, alias: q.From.Alias}, nil
	}
	return selection{}, errors.New("the query must select whole twins: SELECT * or SELECT of the collection's alias")
}
