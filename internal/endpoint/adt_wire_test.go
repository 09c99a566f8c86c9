package endpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/testenv"
)

// fastRetry is the delivery policy of the wire tests: a refused credential is retried with
// the next one at once.
const fastRetry = `"delivery":{"minBackoff":"1ms","maxBackoff":"5ms"}`

// twinEvents are n Twin.Create events of twins <prefix>-0...
func twinEvents(prefix string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = event.Event{ID: id, Source: "twins.example.net", SpecVersion: event.SpecVersion, Type: event.TwinCreate,
			Subject: id, Time: "2026-12-05T10:00:00.0000000Z", DataContentType: "application/json",
			TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			Data:        json.RawMessage(`{"$dtId":"` + id + `","$metadata":{"$model":"dtmi:example:Room;1"}}`)}
	}
	return out
}

// emitEvents commits events to the change log, where the routes pick them up.
func (f *fixture) emitEvents(t *testing.T, events []event.Event) {
	t.Helper()
	err := f.st.Update(context.Background(), func(w store.Writer) error {
		for _, e := range events {
			if err := w.Emit(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// putRouted creates the endpoint name from def and routes every event to it.
func (f *fixture) putRouted(t *testing.T, name, def string) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.reg.Put(ctx, name, json.RawMessage(def)); err != nil {
		t.Fatalf("Put %s: %v", name, err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: name, EndpointName: name, Filter: "true"}); err != nil {
		t.Fatal(err)
	}
}

// gridTopic stands in for an Event Grid topic: it takes POSTs to /api/events authenticated
// by the aeg-sas-key header, answers 401 to any key but its current one, and checks each
// body against the topic's input schema as Event Grid does, answering 400 to a bad one.
type gridTopic struct {
	cloudEvents bool // the topic's schema: CloudEvents 1.0, else the Event Grid schema

	mu       sync.Mutex
	key      string
	received []map[string]json.RawMessage
	problems []string
	refused  atomic.Int32
}

func (g *gridTopic) setKey(k string) {
	g.mu.Lock()
	g.key = k
	g.mu.Unlock()
}

func (g *gridTopic) events() []map[string]json.RawMessage {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.received)
}

func (g *gridTopic) ids() []string {
	var ids []string
	for _, e := range g.events() {
		var id string
		_ = json.Unmarshal(e["id"], &id)
		ids = append(ids, id)
	}
	return ids
}

func (g *gridTopic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/api/events" {
		g.problems = append(g.problems, r.Method+" "+r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("aeg-sas-key") != g.key {
		g.refused.Add(1)
		http.Error(w, "The request authorization key is not authorized for "+r.Host, http.StatusUnauthorized)
		return
	}
	var batch []map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil || len(batch) == 0 {
		g.problems = append(g.problems, fmt.Sprintf("body is not a JSON array of events: %v", err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	wantType, required, optional := "application/json", []string{"id", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}, []string{}
	if g.cloudEvents {
		wantType, required, optional = "application/cloudevents-batch+json", []string{"id", "source", "specversion", "type"},
			// twinflowhops is twinflow's extension attribute; Event Grid passes extensions on.
			[]string{"subject", "time", "datacontenttype", "dataschema", "traceparent", "twinflowhops", "data"}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
		g.problems = append(g.problems, "Content-Type "+ct)
	}
	for _, e := range batch {
		for _, k := range required {
			if _, ok := e[k]; !ok {
				g.problems = append(g.problems, "no "+k)
			}
		}
		for k := range e {
			if !slices.Contains(required, k) && !slices.Contains(optional, k) {
				// topic too: Event Grid refuses one other than its resource id.
				g.problems = append(g.problems, "unexpected member "+k)
			}
		}
		if !g.cloudEvents {
			var t string
			if json.Unmarshal(e["eventTime"], &t) != nil {
				g.problems = append(g.problems, "eventTime is not a string")
			} else if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
				g.problems = append(g.problems, "eventTime: "+err.Error())
			}
			if string(e["metadataVersion"]) != `"1"` {
				g.problems = append(g.problems, "metadataVersion "+string(e["metadataVersion"]))
			}
		}
	}
	if len(g.problems) > 0 {
		http.Error(w, strings.Join(g.problems, "; "), http.StatusBadRequest)
		return
	}
	g.received = append(g.received, batch...)
}

// serveTopic serves topic over https with a certificate of a fresh authority, whose PEM
// file it returns with the server.
func serveTopic(t *testing.T, topic *gridTopic) (srv *httptest.Server, caFile string) {
	caFile, cfg := sinktest.ServerTLS(t)
	srv = httptest.NewUnstartedServer(topic)
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, caFile
}

// TestEventGridDelivery runs an EventGrid endpoint against a stand-in topic served over
// https: events arrive as ADT sends them, with accessKey1, then accessKey2 once the topic
// refuses accessKey1, and accessKey1 again once the topic refuses accessKey2; when the topic
// refuses both, the events are dead-lettered.
func TestEventGridDelivery(t *testing.T) {
	ctx := context.Background()
	topic := &gridTopic{key: key2}
	srv, caFile := serveTopic(t, topic)
	f := newFixtureOf(t, Config{}, adtKinds)
	f.putRouted(t, "grid", `{"properties":{"endpointType":"EventGrid","TopicEndpoint":"`+srv.URL+`/api/events",
		"accessKey1":"`+key1+`","accessKey2":"`+key2+`","tls":{"caFile":"`+caFile+`"},`+fastRetry+`}}`)

	events := twinEvents("grid", 2)
	f.emitEvents(t, events)
	eventually(t, "the topic gets grid-0 and grid-1", func() bool { return len(topic.events()) == 2 })
	if topic.refused.Load() == 0 {
		t.Error("accessKey1 was not tried first")
	}
	st, err := f.reg.Status(ctx, "grid")
	if err != nil || !strings.Contains(st.LastError, "the destination refused accessKey1, sending with accessKey2 next") {
		t.Errorf("Status = %+v, %v; want the refusal of accessKey1 as the last error", st, err)
	}
	got := topic.events()[0]
	want := map[string]string{
		"id": `"grid-0"`, "subject": `"grid-0"`, "eventType": `"Microsoft.DigitalTwins.Twin.Create"`,
		"eventTime": `"2026-12-05T10:00:00.0000000Z"`, "dataVersion": `"1.0"`, "metadataVersion": `"1"`,
		"data": `{"data":` + string(events[0].Data) + `,"contenttype":"application/json","traceparent":"` + events[0].TraceParent + `"}`,
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s = %s, want %s", k, got[k], v)
		}
	}

	// Key rotation: the topic takes accessKey1 again.
	topic.setKey(key1)
	f.emitEvents(t, twinEvents("rotated", 1))
	eventually(t, "rotated-0 arrives", func() bool { return len(topic.events()) == 3 })

	// Both keys refused: dead letters.
	topic.setKey("neither")
	f.emitEvents(t, twinEvents("refused", 1))
	var dls []store.DeadLetter
	eventually(t, "refused-0 is dead-lettered", func() bool {
		dls, err = f.reg.DeadLetters(ctx, "grid", 0, 0)
		return err == nil && len(dls) == 1
	})
	if dls[0].Event.ID != "refused-0" || !strings.Contains(dls[0].Reason, "401") {
		t.Errorf("dead letter %+v", dls[0])
	}
	if got := topic.ids(); !slices.Equal(got, []string{"grid-0", "grid-1", "rotated-0"}) {
		t.Errorf("topic got %v", got)
	}
	topic.mu.Lock()
	defer topic.mu.Unlock()
	if len(topic.problems) > 0 {
		t.Errorf("the topic found: %v", topic.problems)
	}
}

// TestEventGridCloudEvents runs an EventGrid endpoint whose topic takes CloudEvents.
func TestEventGridCloudEvents(t *testing.T) {
	topic := &gridTopic{key: key1, cloudEvents: true}
	srv, caFile := serveTopic(t, topic)
	f := newFixtureOf(t, Config{}, adtKinds)
	f.putRouted(t, "grid", `{"endpointType":"EventGrid","TopicEndpoint":"`+srv.URL+`/api/events",
		"accessKey1":"`+key1+`","eventSchema":"CloudEventSchemaV1_0","tls":{"caFile":"`+caFile+`"},`+fastRetry+`}`)
	f.emitEvents(t, twinEvents("ce", 2))
	eventually(t, "the topic gets ce-0 and ce-1", func() bool { return len(topic.events()) == 2 })
	if got := topic.events()[1]; string(got["specversion"]) != `"1.0"` || string(got["source"]) != `"twins.example.net"` {
		t.Errorf("event %v", got)
	}
	topic.mu.Lock()
	defer topic.mu.Unlock()
	if len(topic.problems) > 0 {
		t.Errorf("the topic found: %v", topic.problems)
	}
}

// eventHubConn is a connection string of namespace addr (host:port) and event hub twins.
func eventHubConn(addr, key string, emulator bool) string {
	s := "Endpoint=sb://" + addr + "/;SharedAccessKeyName=send;SharedAccessKey=" + key + ";EntityPath=twins"
	if emulator {
		s += ";UseDevelopmentEmulator=true"
	}
	return s
}

// TestEventHubKafka runs an EventHub endpoint against a Kafka cluster that, like Event Hubs'
// Kafka endpoint, logs clients in with SASL PLAIN as $ConnectionString with the connection
// string as password: over TLS, and without for an emulator's connection string.
func TestEventHubKafka(t *testing.T) {
	for _, tc := range []struct {
		name     string
		emulator bool
	}{{"TLS", false}, {"emulator", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// The connection string names the cluster's address, so the test listens for it.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			conn := eventHubConn(ln.Addr().String(), key1, tc.emulator)
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, "twins"),
				kfake.ListenFn(func(string, string) (net.Listener, error) { return ln, nil }),
				kfake.EnableSASL(), kfake.Superuser("PLAIN", "$ConnectionString", conn)}
			def := `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn + `",` + fastRetry
			var clientTLS []kgo.Opt
			if !tc.emulator {
				caFile, server := sinktest.ServerTLS(t)
				opts = append(opts, kfake.TLS(server))
				def += `,"tls":{"caFile":"` + caFile + `"}`
				tc, err := sink.TLS{CAFile: caFile}.Config(nil)
				if err != nil {
					t.Fatal(err)
				}
				clientTLS = append(clientTLS, kgo.DialTLSConfig(tc))
			}
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			f := newFixtureOf(t, Config{}, adtKinds)
			f.putRouted(t, "hub", def+`}`)
			events := twinEvents("hub", 3)
			f.emitEvents(t, events)

			client, err := kgo.NewClient(append(clientTLS, kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("twins"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond),
				kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: conn}.AsMechanism()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var got []*kgo.Record
			for len(got) < len(events) {
				fetches := client.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					t.Fatalf("%d records before %v", len(got), err)
				}
				if errs := fetches.Errors(); len(errs) > 0 {
					t.Fatal(errs[0].Err)
				}
				got = append(got, fetches.Records()...)
			}
			slices.SortFunc(got, func(a, b *kgo.Record) int { return strings.Compare(string(a.Key), string(b.Key)) })
			for i, r := range got {
				if string(r.Key) != events[i].Subject || string(r.Value) != string(events[i].Data) || header(r, "ce_id") != events[i].ID ||
					header(r, "ce_type") != event.TwinCreate || header(r, "content-type") != "application/json" {
					t.Errorf("record %d: key %s, value %s, headers %v", i, r.Key, r.Value, r.Headers)
				}
			}
		})
	}
}

func header(r *kgo.Record, name string) string {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// rabbitQueue declares a queue of its own on RabbitMQ (speaking AMQP 1.0) and returns its
// name; the test deletes it when it ends.
func rabbitQueue(t *testing.T) string {
	t.Helper()
	testenv.RabbitMQ10(t)
	conn, err := amqp091.Dial(testenv.RabbitMQ(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("twinflow-adt-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	return q
}

// receiveAMQP10 receives n messages from RabbitMQ's queue q over AMQP 1.0 and returns their
// events, rebuilt from the cloudEvents:* application properties ADT sends.
func receiveAMQP10(t *testing.T, q string, n int) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := amqp10.Dial(ctx, "amqp://guest:guest@"+testenv.RabbitMQAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	session, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := session.NewReceiver(ctx, "/amq/queue/"+q, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for len(out) < n {
		m, err := r.Receive(ctx, nil)
		if err != nil {
			t.Fatalf("%d messages before %v", len(out), err)
		}
		if err := r.AcceptMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		ct := ""
		if m.Properties != nil && m.Properties.ContentType != nil {
			ct = *m.Properties.ContentType
		}
		e, err := amqp.FromProperties(m.ApplicationProperties, ct, m.GetData())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestEventHubAMQP runs an EventHub endpoint over AMQP 1.0 against RabbitMQ: the policy's
// name and key log in with SASL PLAIN, the event hub is the target address.
func TestEventHubAMQP(t *testing.T) {
	q := rabbitQueue(t)
	f := newFixtureOf(t, Config{}, adtKinds)
	conn := "Endpoint=sb://" + testenv.RabbitMQAddr + "/;SharedAccessKeyName=guest;SharedAccessKey=guest;EntityPath=" + q + ";UseDevelopmentEmulator=true"
	f.putRouted(t, "hub", `{"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"`+conn+`",`+fastRetry+`}`)
	events := twinEvents("hub", 3)
	f.emitEvents(t, events)
	for i, e := range receiveAMQP10(t, q, len(events)) {
		if d := sinktest.Equal(e, events[i]); d != "" {
			t.Errorf("event %d:%s", i, d)
		}
	}
}

// TestServiceBus runs a ServiceBus endpoint against RabbitMQ over AMQP 1.0, with a primary
// connection string whose key RabbitMQ refuses: the events go with the secondary's policy
// name and key as SASL PLAIN credentials, to the topic named by EntityPath.
func TestServiceBus(t *testing.T) {
	ctx := context.Background()
	q := rabbitQueue(t)
	f := newFixtureOf(t, Config{}, adtKinds)
	conn := func(key string) string {
		return "Endpoint=sb://" + testenv.RabbitMQAddr + "/;SharedAccessKeyName=guest;SharedAccessKey=" + key + ";EntityPath=" + q + ";UseDevelopmentEmulator=true"
	}
	f.putRouted(t, "bus", `{"endpointType":"ServiceBus","primaryConnectionString":"`+conn("rotated-away")+`",
		"secondaryConnectionString":"`+conn("guest")+`",`+fastRetry+`}`)
	events := twinEvents("bus", 3)
	f.emitEvents(t, events)
	for i, e := range receiveAMQP10(t, q, len(events)) {
		if d := sinktest.Equal(e, events[i]); d != "" {
			t.Errorf("event %d:%s", i, d)
		}
	}
	st, err := f.reg.Status(ctx, "bus")
	if err != nil || !strings.Contains(st.LastError, "the destination refused primaryConnectionString, sending with secondaryConnectionString next") ||
		strings.Contains(st.LastError, "rotated-away") {
		t.Errorf("Status = %+v, %v; want the refusal of the primary, without its key, as the last error", st, err)
	}
}
