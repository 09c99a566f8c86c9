package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/detector"
)

// TestDetectorValidation puts invalid detectors and checks each is refused with 400 and ADT's
// error body naming the problem, and changes nothing: a new one is not created, a replaced
// one keeps its definition.
func TestDetectorValidation(t *testing.T) {
	logger := testLogger(t)
	st, svc := openService(t, logger)
	detectors, err := detector.New(detector.Config{}, st, nil, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	e := serve(t, Config{Detectors: detectors}, st, svc, logger)
	const good = `{"twins":"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Room;1')","properties":["temp"]}`
	if r := e.do("PUT", "/detectors/kept?api-version=2023-10-31", good); r.status != http.StatusCreated {
		t.Fatalf("PUT a valid detector = %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, path, body string
		want             string // in the error's message or details
	}{
		{"not JSON", "new", `{`, "not valid JSON"},
		{"unknown member", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"x":1}`, `unknown field "x"`},
		{"no query", "new", `{"properties":["temp"]}`, "twins: a query selecting the twins to watch is required"},
		{"bad query", "new", `{"twins":"SELECT * FROM","properties":["temp"]}`, "twins: SQL query parse failed"},
		{"relationships", "new", `{"twins":"SELECT * FROM RELATIONSHIPS","properties":["temp"]}`, "not relationships"},
		{"join", "new", `{"twins":"SELECT T FROM DIGITALTWINS T JOIN C RELATED T.contains WHERE T.$dtId = 'x'","properties":["temp"]}`, "without JOIN or MATCH"},
		{"count", "new", `{"twins":"SELECT COUNT() FROM DIGITALTWINS","properties":["temp"]}`, "not COUNT()"},
		{"projection", "new", `{"twins":"SELECT T.temp FROM DIGITALTWINS T","properties":["temp"]}`, "whole twins"},
		{"empty properties", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":[]}`, "properties: at least one"},
		{"metadata property", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["$dtId"]}`, "not the name of a top-level property"},
		{"nested property", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["a/b"]}`, "not the name of a top-level property"},
		{"property twice", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t","t"]}`, "named twice"},
		{"sensitivity 0", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"sensitivity":0}`, "sensitivity: 0 is not in (0, 1]"},
		{"sensitivity above 1", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"sensitivity":1.5}`, "sensitivity: 1.5 is not in (0, 1]"},
		{"unknown method", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"method":"magic"}`, `method: "magic" is not one of`},
		{"warm-up", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"warmUp":0}`, "warmUp: 0 is not in"},
		{"peers not a boolean", "new", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"peers":"yes"}`, "peers"},
		{"bad name", "a.b", good, "The detector name a.b is invalid"},
		{"replace badly", "kept", `{"twins":"SELECT * FROM DIGITALTWINS","properties":["t"],"method":"magic"}`, `method: "magic"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("PUT", "/detectors/"+tc.path+"?api-version=2023-10-31", tc.body)
			var b struct {
				Error struct {
					Message string
					Details []struct{ Message string }
				}
			}
			_ = json.Unmarshal(r.body, &b)
			text := b.Error.Message
			for _, d := range b.Error.Details {
				text += "\n" + d.Message
			}
			if r.status != http.StatusBadRequest || r.errCode() != "InvalidArgument" || !strings.Contains(text, tc.want) {
				t.Errorf("PUT = %d %s, want 400 InvalidArgument naming %q", r.status, r.body, tc.want)
			}
		})
	}
	if r := e.do("GET", "/detectors/new?api-version=2023-10-31", ""); r.status != http.StatusNotFound || r.errCode() != "DetectorNotFound" {
		t.Errorf("GET of a refused detector = %d %s, want 404 DetectorNotFound", r.status, r.body)
	}
	r := e.do("GET", "/detectors/kept?api-version=2023-10-31", "")
	var got struct {
		Method      string  `json:"method"`
		Sensitivity float64 `json:"sensitivity"`
		WarmUp      int     `json:"warmUp"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || got.Method != "auto" || got.Sensitivity != 0.5 || got.WarmUp != 100 {
		t.Errorf("GET of a detector after a refused replacement = %d %s, want the defaults it was created with", r.status, r.body)
	}

	// The list pages as ADT's lists do.
	for _, name := range []string{"b", "c"} {
		e.do("PUT", "/detectors/"+name+"?api-version=2023-10-31", good)
	}
	var names []string
	for link := "/detectors?api-version=2023-10-31"; link != ""; {
		r := e.do("GET", link, "", "max-items-per-page", "2")
		var p struct {
			Value    []struct{ Name string } `json:"value"`
			NextLink *string                 `json:"nextLink"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil || len(p.Value) > 2 {
			t.Fatalf("GET %s = %s", link, r.body)
		}
		for _, d := range p.Value {
			names = append(names, d.Name)
		}
		link = ""
		if p.NextLink != nil {
			link = e.local(*p.NextLink)
		}
	}
	if strings.Join(names, ",") != "b,c,kept" {
		t.Errorf("paged list = %v, want b, c, kept", names)
	}
	if r := e.do("POST", "/detectors/kept/backtest?api-version=2023-10-31", `{"twinId":"x","property":"temp"}`); r.status != http.StatusBadRequest ||
		r.errCode() != "OperationNotAllowed" {
		t.Errorf("a backtest without history = %d %s, want 400 OperationNotAllowed", r.status, r.body)
	}
}
