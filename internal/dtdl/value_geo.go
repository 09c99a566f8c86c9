package dtdl

import "fmt"

// geoJSONType returns the GeoJSON geometry type a geospatial schema kind requires, or "" if
// the kind is not geospatial.
func geoJSONType(k Kind) string {
	switch k {
	case KindPoint:
		return "Point"
	case KindLineString:
		return "LineString"
	case KindPolygon:
		return "Polygon"
	case KindMultiPoint:
		return "MultiPoint"
	case KindMultiLineString:
		return "MultiLineString"
	case KindMultiPolygon:
		return "MultiPolygon"
	}
	return ""
}

// geoProblem checks a GeoJSON geometry object (RFC 7946) of the given kind and returns why it
// is not one, or "" if it is.
//
// The object must have "type" equal to the kind's geometry type and "coordinates" of the right
// shape; "bbox" is allowed (an array of 4 or 6 numbers) and any other member is refused, as
// DTDL defines the geospatial schemas as objects of exactly these fields. A position is an array
// of 2 or 3 finite numbers (longitude, latitude, optional altitude; ranges are not checked). A
// LineString has at least 2 positions; a Polygon has at least one linear ring; a linear ring has
// at least 4 positions and is closed (its first and last positions are equal). The Multi kinds
// may be empty arrays.
func geoProblem(k Kind, m map[string]any) string {
	want := geoJSONType(k)
	t, present := m["type"]
	if !present {
		return `the "type" member is missing`
	}
	if got, _ := t.(string); got != want {
		return fmt.Sprintf(`"type" is %s, not %q`, describeValue(t), want)
	}
	for name, v := range m {
		switch name {
		case "type":
		case "coordinates":
		case "bbox":
			if p := bboxProblem(v); p != "" {
				return p
			}
		default:
			return fmt.Sprintf("%q is not a member of a GeoJSON %s", name, want)
		}
	}
	c, present := m["coordinates"]
	if !present {
		return `the "coordinates" member is missing`
	}
	var p string
	switch k {
	case KindPoint:
		p = positionProblem(c)
	case KindLineString:
		p = lineProblem(c)
	case KindPolygon:
		p = polygonProblem(c)
	case KindMultiPoint:
		p = eachProblem(c, positionProblem)
	case KindMultiLineString:
		p = eachProblem(c, lineProblem)
	case KindMultiPolygon:
		p = eachProblem(c, polygonProblem)
	}
	if p != "" {
		return "coordinates" + p
	}
	return ""
}

// The coordinate checkers return "" or a problem prefixed by its location inside the
// coordinates, e.g. "[1][0]: a position is an array of 2 or 3 numbers".

func positionProblem(v any) string {
	a, ok := v.([]any)
	if !ok || len(a) < 2 || len(a) > 3 {
		return ": a position is an array of 2 or 3 numbers"
	}
	for _, e := range a {
		if _, ok := numberFloat(e); !ok {
			return ": a position is an array of 2 or 3 numbers"
		}
	}
	return ""
}

func positionsProblem(v any, min int, what string) string {
	a, ok := v.([]any)
	if !ok || len(a) < min {
		return fmt.Sprintf(": a %s is an array of at least %d positions", what, min)
	}
	for i, e := range a {
		if p := positionProblem(e); p != "" {
			return fmt.Sprintf("[%d]%s", i, p)
		}
	}
	return ""
}

func lineProblem(v any) string { return positionsProblem(v, 2, "LineString") }

func ringProblem(v any) string {
	if p := positionsProblem(v, 4, "linear ring"); p != "" {
		return p
	}
	a := v.([]any)
	first, last := a[0].([]any), a[len(a)-1].([]any)
	if len(first) != len(last) {
		return ": a linear ring must end with its first position"
	}
	for i := range first {
		x, _ := numberFloat(first[i])
		y, _ := numberFloat(last[i])
		if x != y {
			return ": a linear ring must end with its first position"
		}
	}
	return ""
}

func polygonProblem(v any) string {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return ": a Polygon is an array of at least one linear ring"
	}
	return eachProblem(v, ringProblem)
}

// eachProblem checks that v is an array and every element passes check.
func eachProblem(v any, check func(any) string) string {
	a, ok := v.([]any)
	if !ok {
		return ": not an array"
	}
	for i, e := range a {
		if p := check(e); p != "" {
			return fmt.Sprintf("[%d]%s", i, p)
		}
	}
	return ""
}

func bboxProblem(v any) string {
	const problem = `"bbox" is an array of 4 or 6 numbers`
	a, ok := v.([]any)
	if !ok || (len(a) != 4 && len(a) != 6) {
		return problem
	}
	for _, e := range a {
		if _, ok := numberFloat(e); !ok {
			return problem
		}
	}
	return ""
}
