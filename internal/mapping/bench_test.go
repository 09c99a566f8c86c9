package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/ingress"
)

// benchMessage is an IoT Hub-style device message, as devices send them.
var benchMessage = ingress.Message{
	Topic: "devices/thermostat67/messages/events/",
	Body:  []byte(`{"temperature":21.5,"humidity":40,"battery":97,"firmware":"1.4.2","seq":1234}`),
	Order: "devices/thermostat67/messages/events/",
}

// benchDefinition is the mapping of benchMessage: the device's twin gets its temperature and
// humidity.
var benchDefinition = Definition{
	Source:    "hub",
	Condition: "message.topic.startsWith('devices/') && message.topic.endsWith('/messages/events/')",
	TwinID:    "message.topic.split('/')[1]",
	Patch: map[string]string{
		"/Temperature": "message.body.temperature",
		"/Humidity":    "message.body.humidity",
	},
}

var benchTwins = twinMap{"thermostat67": []byte(`{"$dtId":"thermostat67","$etag":"W/\"1\"","$metadata":{"$model":"dtmi:contosocom:DigitalTwins:Thermostat;1"},"Temperature":20,"Humidity":35}`)}

// handMapper is benchDefinition written by hand in Go, the ceiling a mapping can reach: it
// checks the topic, takes the twin id from it, decodes the body into a struct, checks that
// the twin exists, and builds the same patch, with no interpretation in between.
type handMapper struct{}

func (handMapper) Map(_ context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
	rest, ok := strings.CutPrefix(m.Topic, "devices/")
	if !ok || !strings.HasSuffix(m.Topic, "/messages/events/") {
		return nil, nil
	}
	id, _, _ := strings.Cut(rest, "/")
	var body struct {
		Temperature *float64 `json:"temperature"`
		Humidity    *float64 `json:"humidity"`
	}
	if err := json.Unmarshal(m.Body, &body); err != nil {
		return nil, err
	}
	if body.Temperature == nil || body.Humidity == nil {
		return nil, errors.New("no temperature or humidity")
	}
	if _, ok, err := twins.Twin(id); err != nil || !ok {
		return nil, errors.New("no twin " + id)
	}
	p := make([]byte, 0, 96)
	p = append(p, `[{"op":"add","path":"/Humidity","value":`...)
	p = strconv.AppendFloat(p, *body.Humidity, 'f', -1, 64)
	p = append(p, `},{"op":"add","path":"/Temperature","value":`...)
	p = strconv.AppendFloat(p, *body.Temperature, 'f', -1, 64)
	p = append(p, "}]"...)
	return []ingress.Change{{TwinID: id, Patch: p}}, nil
}

// BenchmarkMap measures the cost of mapping one device message with a CEL mapping (cel)
// against the same mapping written by hand in Go (go), in the same run. Both produce the
// same change, which the benchmark checks first.
func BenchmarkMap(b *testing.B) {
	m, err := Compile(benchDefinition, Config{}, Deps{Graph: &relGraph{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	want, err := handMapper{}.Map(ctx, benchMessage, benchTwins)
	if err != nil {
		b.Fatal(err)
	}
	got, err := m.Map(ctx, benchMessage, benchTwins)
	if err != nil || len(got) != 1 || got[0].TwinID != want[0].TwinID || !bytes.Equal(got[0].Patch, want[0].Patch) {
		b.Fatalf("the mapping gives %+v, %v; the hand-written one %s %s", got, err, want[0].TwinID, want[0].Patch)
	}
	for _, bm := range []struct {
		name   string
		mapper ingress.Mapper
	}{{"cel", m}, {"go", handMapper{}}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.mapper.Map(ctx, benchMessage, benchTwins); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunaway measures how long a rule that goes over the default cost limit runs
// before it is stopped: a loop over a list of 100,000 numbers in a 200 KB message, with the
// decoding of the message.
func BenchmarkRunaway(b *testing.B) {
	m, err := Compile(Definition{Source: "s", TwinID: "'t'", Patch: map[string]string{"/x": "message.body.items.map(x, x * 2.0)"}}, Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"items":[` + strings.Repeat("1,", 99_999) + `1]}`)
	msg := ingress.Message{Body: body}
	twins := twinMap{"t": []byte(`{"$dtId":"t"}`)}
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.Map(ctx, msg, twins); !errors.Is(err, ErrCostLimit) {
			b.Fatalf("Map = %v, want the cost limit exceeded", err)
		}
	}
}
