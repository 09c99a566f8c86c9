package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/twinflow/twinflow/internal/testenv"
)

// TestBrokerSources puts a kafka source (on a kfake cluster), a nats source (on the
// JetStream server) and an amqp source (on RabbitMQ) through the API, with mapping rules: their messages set the twins, the
// status says running with the broker's lag, and a secret is not shown.
func TestBrokerSources(t *testing.T) {
	s, _ := start(t, Config{}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", `[{"@id":"dtmi:example:Thermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		"contents":[{"@type":"Property","name":"Temperature","schema":"double"}]}]`, http.StatusCreated)
	for _, id := range []string{"k1", "n1", "a1"} {
		c.do("PUT", "/digitaltwins/"+id, `{"$metadata":{"$model":"dtmi:example:Thermostat;1"}}`, http.StatusOK)
	}
	// waitTemperature waits until twin id's Temperature is want.
	waitTemperature := func(id string, want float64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			twin := c.do("GET", "/digitaltwins/"+id, "", http.StatusOK)
			if strings.Contains(twin, fmt.Sprintf(`"Temperature":%v`, want)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("twin %s = %s, want Temperature %v", id, twin, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	mapping := func(src string) string {
		return `{"source":"` + src + `","twinId":"message.body.device","patch":{"/Temperature":"message.body.t"}}`
	}

	t.Run("kafka", func(t *testing.T) {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "telemetry"),
			kfake.EnableSASL(), kfake.Superuser("PLAIN", "tf", "s3cret"))
		if err != nil {
			t.Fatal(err)
		}
		defer cluster.Close()
		addr := cluster.ListenAddrs()[0]
		c.do("PUT", "/sources/plant", `{"sourceType":"kafka","brokers":["`+addr+`"],"topics":["telemetry"],
			"sasl":{"mechanism":"PLAIN","user":"tf","password":"s3cret"}}`, http.StatusCreated)
		c.do("PUT", "/mappings/plant", mapping("plant"), http.StatusCreated)
		if got := c.do("GET", "/sources/plant", "", http.StatusOK); strings.Contains(got, "s3cret") {
			t.Errorf("GET shows the password: %s", got)
		}
		producer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("telemetry"),
			kgo.SASL(plain.Auth{User: "tf", Pass: "s3cret"}.AsMechanism()))
		if err != nil {
			t.Fatal(err)
		}
		defer producer.Close()
		for i := range 3 {
			rec := &kgo.Record{Key: []byte("k1"), Value: fmt.Appendf(nil, `{"device":"k1","t":%d}`, 20+i)}
			if err := producer.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		waitTemperature("k1", 22)
		waitStatus(t, c, "plant", `"state":"running"`, `"lag":0`, `"applied":3`)
	})

	t.Run("nats", func(t *testing.T) {
		nc, err := nats.Connect(testenv.NATS(t))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		stream := fmt.Sprintf("server_%d", time.Now().UnixNano())
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		defer js.DeleteStream(context.Background(), stream)
		c.do("PUT", "/sources/lab", `{"sourceType":"nats","url":"`+testenv.NATS(t)+`","stream":"`+stream+`"}`, http.StatusCreated)
		c.do("PUT", "/mappings/lab", mapping("lab"), http.StatusCreated)
		for i := range 3 {
			if _, err := js.Publish(t.Context(), stream+".n1", fmt.Appendf(nil, `{"device":"n1","t":%d}`, 30+i), jetstream.WithMsgID(fmt.Sprint("m", i))); err != nil {
				t.Fatal(err)
			}
		}
		waitTemperature("n1", 32)
		waitStatus(t, c, "lab", `"state":"running"`, `"lag":0`, `"applied":3`)
	})

	t.Run("amqp", func(t *testing.T) {
		url := testenv.RabbitMQ(t)
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		q := fmt.Sprintf("server-%d", time.Now().UnixNano())
		defer ch.QueueDelete(q, false, false, false)
		// The source declares its queue and binds it to amq.topic.
		c.do("PUT", "/sources/bus", `{"sourceType":"amqp","url":"`+url+`","queue":"`+q+`","exchange":"amq.topic","bindingKeys":["`+q+`.#"]}`, http.StatusCreated)
		c.do("PUT", "/mappings/bus", mapping("bus"), http.StatusCreated)
		waitStatus(t, c, "bus", `"state":"running"`)
		for i := range 3 {
			if err := ch.PublishWithContext(t.Context(), "amq.topic", q+".a1", false, false,
				amqp091.Publishing{MessageId: fmt.Sprint("m", i), Body: fmt.Appendf(nil, `{"device":"a1","t":%d}`, 40+i)}); err != nil {
				t.Fatal(err)
			}
		}
		waitTemperature("a1", 42)
		waitStatus(t, c, "bus", `"applied":3`)
	})
}

// waitStatus waits until the GET of source name shows every one of want.
func waitStatus(t *testing.T, c apiClient, name string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := c.do("GET", "/sources/"+name, "", http.StatusOK)
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(got, w)
		}
		if !missing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("source %s = %s, want %v", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
