package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/ingress"
)

// TestFormatDouble checks that doubles are written as encoding/json writes them.
func TestFormatDouble(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 21, 21.5, 0.1, 0.1 + 0.2, 1e20, 1e21, 1.5e21, 1e-6, 1e-7, 1.234e-9,
		123456789012345680, math.MaxFloat64, math.SmallestNonzeroFloat64, 9007199254740993} {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatDouble(f); got != string(want) {
			t.Errorf("formatDouble(%v) = %s, want %s", f, got, want)
		}
	}
}

// failingReader fails every read.
type failingReader struct{ err error }

func (r failingReader) Twin(string) ([]byte, bool, error) { return nil, false, r.err }

// failingGraph fails every question.
type failingGraph struct{ err error }

func (g failingGraph) Incoming(context.Context, string, string) ([]string, error) { return nil, g.err }
func (g failingGraph) Outgoing(context.Context, string, string) ([]string, error) { return nil, g.err }

// TestUnavailable checks that failures to read twins or the graph, and an ended context, are
// not the message's fault: they wrap ingress.ErrUnavailable and the cause.
func TestUnavailable(t *testing.T) {
	storeDown := errors.New("store down")
	ctx := context.Background()
	msg := ingress.Message{Body: []byte(`{"id":"t1"}`)}
	twins := twinMap{"t1": []byte(`{"$dtId":"t1"}`)}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name  string
		def   Definition
		ctx   context.Context
		twins ingress.TwinReader
		graph Graph
		cause error
	}{
		{"target twin", Definition{Source: "s", TwinID: "message.body.id", Patch: map[string]string{"/a": "1"}}, ctx, failingReader{storeDown}, &relGraph{}, storeDown},
		{"twinById", Definition{Source: "s", TwinID: "'t1'", Patch: map[string]string{"/a": "twinById('x')"}}, ctx, &onlyTarget{twins, storeDown}, &relGraph{}, storeDown},
		{"incoming", Definition{Source: "s", TwinIDs: "incoming(message.body.id, 'contains')", Patch: map[string]string{"/a": "1"}}, ctx, twins, failingGraph{storeDown}, storeDown},
		{"outgoing in patch", Definition{Source: "s", TwinID: "'t1'", Patch: map[string]string{"/a": "outgoing('t1', 'x').size() > 0"}}, ctx, twins, failingGraph{storeDown}, storeDown},
		{"context", Definition{Source: "s", TwinID: "'t1'", Patch: map[string]string{"/a": "1"}}, cancelled, twins, &relGraph{}, context.Canceled},
	}
	for _, tt := range tests {
		m, err := Compile(tt.def, Config{}, Deps{Graph: tt.graph})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		_, err = m.Map(tt.ctx, msg, tt.twins)
		if !errors.Is(err, ingress.ErrUnavailable) || !errors.Is(err, tt.cause) {
			t.Errorf("%s: Map error %v, want one wrapping ErrUnavailable and %v", tt.name, err, tt.cause)
		}
		var ee *EvalError
		if errors.As(err, &ee) {
			t.Errorf("%s: Map error %v is an EvalError, the message's fault", tt.name, err)
		}
	}
}

// onlyTarget reads the twins of a twinMap and fails for others.
type onlyTarget struct {
	twins twinMap
	err   error
}

func (r *onlyTarget) Twin(id string) ([]byte, bool, error) {
	if d, ok := r.twins[id]; ok {
		return d, true, nil
	}
	return nil, false, r.err
}

// TestWithoutGraph checks that without a Graph, incoming and outgoing do not compile.
func TestWithoutGraph(t *testing.T) {
	_, err := Compile(Definition{Source: "s", TwinIDs: "incoming('t', 'contains')", Patch: map[string]string{"/a": "1"}}, Config{}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "undeclared reference to 'incoming'") {
		t.Fatalf("Compile without a graph: %v, want incoming undeclared", err)
	}
}

// TestFieldErrors checks that Compile's problems can be told apart by field.
func TestFieldErrors(t *testing.T) {
	_, err := Compile(Definition{TwinID: "1", Patch: map[string]string{"/a": "message.nope"}}, Config{}, Deps{})
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("problem %v is not a *FieldError", e)
		}
		fields = append(fields, fe.Field)
	}
	if got := strings.Join(fields, " "); got != "source twinId patch./a" {
		t.Errorf("fields of the problems = %q, want source, twinId and patch./a", got)
	}
}

// TestConcurrentMap uses one Mapping from several goroutines, as the ingress runner does
// for messages of different orders.
func TestConcurrentMap(t *testing.T) {
	m, err := Compile(Definition{
		Source:    "s",
		Condition: "message.topic.startsWith('devices/')",
		TwinID:    "message.topic.split('/')[1]",
		Patch:     map[string]string{"/t": "message.body.t", "/n": "twin.?n.orValue(0.0) + 1.0"},
	}, Config{}, Deps{Graph: &relGraph{}})
	if err != nil {
		t.Fatal(err)
	}
	twins := twinMap{}
	for i := range 8 {
		twins[fmt.Sprint("d", i)] = fmt.Appendf(nil, `{"$dtId":"d%d","n":%d}`, i, i)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				msg := ingress.Message{Topic: fmt.Sprintf("devices/d%d/messages/events/", i), Body: fmt.Appendf(nil, `{"t":%d}`, j)}
				changes, err := m.Map(context.Background(), msg, twins)
				want := fmt.Sprintf(`[{"op":"add","path":"/n","value":%d},{"op":"add","path":"/t","value":%d}]`, i+1, j)
				if err != nil || len(changes) != 1 || string(changes[0].Patch) != want {
					t.Errorf("Map(%s) = %+v, %v; want patch %s", msg.Topic, changes, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzMap maps arbitrary messages with rules that read every part of them: it must never
// panic, and every error must be the message's fault.
func FuzzMap(f *testing.F) {
	m, err := Compile(Definition{
		Source:    "s",
		Condition: "message.topic.startsWith('devices/') || has(message.headers.k)",
		TwinID:    "'t1'",
		Patch: map[string]string{
			"/a":   "message.body",
			"/b/c": "message.topic.split('/')",
			"/d":   "type(message.body) == map ? message.body.?x.orValue(null) : null",
		},
		Telemetry: "{'key': message.key, 'n': type(message.body) == list ? size(message.body) : 0}",
	}, Config{MaxMessageBytes: 4096}, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	twins := twinMap{"t1": []byte(`{"$dtId":"t1","b":5,"d":1}`)}
	f.Add("devices/x/messages/events/", []byte(`{"x":[1,2,{"y":null}]}`))
	f.Add("devices/", []byte(`"\ud800"`))
	f.Add("other", []byte(`[1e400]`))
	f.Add("devices/\xff", []byte("\xff\xfe not json"))
	f.Fuzz(func(t *testing.T, topic string, body []byte) {
		msg := ingress.Message{Topic: topic, Key: topic, Headers: map[string]string{"k": "v"}, Body: body}
		changes, err := m.Map(context.Background(), msg, twins)
		if errors.Is(err, ingress.ErrUnavailable) {
			t.Fatalf("Map(%q, %q) = %v: not the message's fault", topic, body, err)
		}
		for _, c := range changes {
			if c.Patch != nil && !json.Valid(c.Patch) || c.Telemetry != nil && !json.Valid(c.Telemetry) {
				t.Fatalf("Map(%q, %q) gave invalid JSON: %s %s", topic, body, c.Patch, c.Telemetry)
			}
		}
	})
}
