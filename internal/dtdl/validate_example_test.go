package dtdl_test

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/dtdl"
)

// A JSON Patch is checked one op at a time with ValidatePath; every problem carries the
// property path and the expected schema.
func ExampleInterface_ValidatePath() {
	double := &dtdl.Schema{Kind: dtdl.KindDouble, ID: "dtmi:dtdl:instance:Schema:double;3"}
	thermostat := &dtdl.Interface{
		ID:         "dtmi:ex:Thermostat;1",
		Properties: map[string]*dtdl.Property{"setPoint": {Name: "setPoint", Schema: double}},
	}
	room := &dtdl.Interface{
		ID:         "dtmi:ex:Room;1",
		Properties: map[string]*dtdl.Property{"temp": {Name: "temp", Schema: double}},
		Components: map[string]*dtdl.Component{"thermostat": {Name: "thermostat", Schema: thermostat}},
	}
	patch := []struct {
		path  string
		value any
	}{
		{"/temp", json.Number("21.5")},
		{"/thermostat/setPoint", "warm"},
		{"/color", "red"},
	}
	for _, op := range patch {
		err := room.ValidatePath(strings.Split(op.path[1:], "/"), op.value)
		if verr, ok := err.(*dtdl.ValidationError); ok {
			p := verr.Problems[0]
			fmt.Printf("%s: %s (expected %q)\n", p.Path, p.Message, p.Expected)
			continue
		}
		fmt.Printf("%s: ok\n", op.path)
	}
	// Output:
	// /temp: ok
	// thermostat/setPoint: "warm" is not a valid double (expected "double")
	// color: 'color' is not a property of dtmi:ex:Room;1 (expected "")
}
