package endpoint

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/sink"
)

// adtKinds are ADT's endpoint types beside a webhook.
var adtKinds = map[string]Kind{
	"webhook":      KindOf(webhook.NewSink, webhook.Handshake),
	EventGridType:  EventGridKind(),
	EventHubType:   EventHubKind(),
	ServiceBusType: ServiceBusKind(),
}

// The secrets of the test definitions; no error message or read-back may show them.
const (
	key1 = "KEY1+abc/def=="
	key2 = "KEY2+ghi/jkl=="
	// conn1 and conn2 are the primary and secondary connection strings of a policy "send"
	// on event hub or topic "twins".
	conn1 = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key1 + ";EntityPath=twins"
	conn2 = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key2 + ";EntityPath=twins"
)

func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		name, s string
		want    connectionString
		err     string
	}{
		{"portal", conn1, connectionString{raw: conn1, host: "ns.servicebus.windows.net",
			keyName: "send", key: key1, entityPath: "twins"}, ""},
		{"namespace level, keys in any case, spaces and a trailing ;",
			" endpoint=sb://NS.servicebus.windows.net; sharedaccesskeyname=root ;SHAREDACCESSKEY=" + key1 + ";TransportType=Amqp; ",
			connectionString{raw: "endpoint=sb://NS.servicebus.windows.net; sharedaccesskeyname=root ;SHAREDACCESSKEY=" + key1 + ";TransportType=Amqp;",
				host: "NS.servicebus.windows.net", keyName: "root", key: key1}, ""},
		{"emulator", "Endpoint=sb://localhost:5673;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
			connectionString{raw: "Endpoint=sb://localhost:5673;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
				host: "localhost", port: "5673", keyName: "RootManageSharedAccessKey", key: "SAS_KEY_VALUE", emulator: true}, ""},
		{"shared access signature", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=" + key1,
			connectionString{raw: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=" + key1,
				host: "ns.servicebus.windows.net", sas: "SharedAccessSignature sr=x&sig=" + key1}, ""},
		{"no endpoint", "SharedAccessKeyName=send;SharedAccessKey=" + key1, connectionString{}, "Endpoint: required"},
		{"https endpoint", "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key1, connectionString{}, "Endpoint: not a namespace address"},
		{"key run into the endpoint", "Endpoint=sb://ns.servicebus.windows.net/SharedAccessKey=" + key1, connectionString{}, "Endpoint: not a namespace address"},
		{"no key", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send", connectionString{}, "SharedAccessKeyName and SharedAccessKey: required"},
		{"key and signature", conn1 + ";SharedAccessSignature=x", connectionString{}, "not both"},
		{"not pairs", "sb://ns.servicebus.windows.net/;" + key1, connectionString{}, "Key=Value pairs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConnectionString(tt.s)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parse = %v, want an error mentioning %q", err, tt.err)
				}
				if strings.Contains(err.Error(), key1) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// parseSettings parses body with the ADT kinds and returns its decoded settings.
func parseSettings(t *testing.T, body string) any {
	t.Helper()
	def, err := Parse(json.RawMessage(body), adtKinds)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	switch s := def.settings.(type) {
	case typed[EventGridConfig, *failover]:
		return s.c
	case typed[EventHubConfig, *failoverPublisher]:
		return s.c
	case typed[ServiceBusConfig, *failoverPublisher]:
		return s.c
	}
	t.Fatalf("settings of type %T", def.settings)
	return nil
}

// TestTranslateEventGrid checks the webhook settings an EventGrid endpoint becomes, one per
// access key.
func TestTranslateEventGrid(t *testing.T) {
	const topic = "https://contosoGrid.westus2-1.eventgrid.azure.net/api/events"
	grid := func(key string) webhook.SinkConfig {
		return webhook.SinkConfig{URL: topic, Mode: webhook.EventGrid, OmitTopic: true, Headers: map[string]string{"aeg-sas-key": key}}
	}
	tests := []struct {
		name, body string
		want       []namedConfig[webhook.SinkConfig]
	}{
		{"both keys", `{"endpointType":"EventGrid","TopicEndpoint":"` + topic + `","accessKey1":"` + key1 + `","accessKey2":"` + key2 + `"}`,
			[]namedConfig[webhook.SinkConfig]{{"accessKey1", grid(key1)}, {"accessKey2", grid(key2)}}},
		{"one key, ARM's read-only and default properties", `{"endpointType":"EventGrid","TopicEndpoint":"` + topic + `","accessKey1":"` + key1 + `",
			"accessKey2":null,"authenticationType":"KeyBased","provisioningState":"Succeeded","createdTime":"2019-11-19T01:10:34.350Z","identity":null}`,
			[]namedConfig[webhook.SinkConfig]{{"accessKey1", grid(key1)}}},
		{"CloudEvents topic with a private CA", `{"endpointType":"EventGrid","TopicEndpoint":"` + topic + `","accessKey1":"` + key1 + `",
			"eventSchema":"CloudEventSchemaV1_0","tls":{"caFile":"/etc/ca.pem"}}`,
			[]namedConfig[webhook.SinkConfig]{{"accessKey1", webhook.SinkConfig{URL: topic, Mode: webhook.Batched,
				Headers: map[string]string{"aeg-sas-key": key1}, TLS: sink.TLS{CAFile: "/etc/ca.pem"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseSettings(t, tt.body).(EventGridConfig).credentials()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("credentials =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, c := range got {
				if err := c.cfg.Validate(); err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
			}
		})
	}
}

// TestTranslateEventHub checks the Kafka and AMQP settings an EventHub endpoint becomes, one
// per connection string.
func TestTranslateEventHub(t *testing.T) {
	kafkaCfg := func(brokers, conn string, tls sink.TLS) kafka.SinkConfig {
		return kafka.SinkConfig{Brokers: []string{brokers}, Topic: "twins",
			SASL: kafka.SASL{Mechanism: kafka.Plain, User: "$ConnectionString", Password: conn}, TLS: tls}
	}
	const emulator = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
	const namespaceLevel = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key1
	tests := []struct {
		name, body string
		kafka      []namedConfig[kafka.SinkConfig]
		amqp       []namedConfig[amqp.SinkConfig]
	}{
		{"Kafka by default: port 9093, TLS, $ConnectionString",
			`{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `","connectionStringSecondaryKey":"` + conn2 + `"}`,
			[]namedConfig[kafka.SinkConfig]{
				{"connectionStringPrimaryKey", kafkaCfg("ns.servicebus.windows.net:9093", conn1, sink.TLS{Enabled: true})},
				{"connectionStringSecondaryKey", kafkaCfg("ns.servicebus.windows.net:9093", conn2, sink.TLS{Enabled: true})},
			}, nil},
		{"namespace-level string with entityPath and endpointUri",
			`{"endpointType":"EventHub","protocol":"kafka","connectionStringPrimaryKey":"` + namespaceLevel + `",
			"endpointUri":"sb://NS.servicebus.windows.net","entityPath":"twins"}`,
			[]namedConfig[kafka.SinkConfig]{{"connectionStringPrimaryKey", kafkaCfg("ns.servicebus.windows.net:9093", namespaceLevel, sink.TLS{Enabled: true})}}, nil},
		{"emulator: port 9092, no TLS",
			`{"endpointType":"EventHub","connectionStringPrimaryKey":"` + emulator + `","entityPath":"twins"}`,
			[]namedConfig[kafka.SinkConfig]{{"connectionStringPrimaryKey", kafkaCfg("localhost:9092", emulator, sink.TLS{})}}, nil},
		{"emulator with TLS settings",
			`{"endpointType":"EventHub","connectionStringPrimaryKey":"` + emulator + `","entityPath":"twins","tls":{"caFile":"/ca.pem"}}`,
			[]namedConfig[kafka.SinkConfig]{{"connectionStringPrimaryKey", kafkaCfg("localhost:9093", emulator, sink.TLS{Enabled: true, CAFile: "/ca.pem"})}}, nil},
		{"AMQP: amqps, the policy as SASL PLAIN user, the event hub as address",
			`{"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"` + conn1 + `","connectionStringSecondaryKey":"` + conn2 + `"}`,
			nil, []namedConfig[amqp.SinkConfig]{
				{"connectionStringPrimaryKey", amqp.SinkConfig{URL: "amqps://send:KEY1+abc%2Fdef==@ns.servicebus.windows.net:5671/", Protocol: amqp.Protocol10, Address: "twins"}},
				{"connectionStringSecondaryKey", amqp.SinkConfig{URL: "amqps://send:KEY2+ghi%2Fjkl==@ns.servicebus.windows.net:5671/", Protocol: amqp.Protocol10, Address: "twins"}},
			}},
		{"AMQP on an emulator with a port",
			`{"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=guest;SharedAccessKey=guest;UseDevelopmentEmulator=true;EntityPath=twins"}`,
			nil, []namedConfig[amqp.SinkConfig]{
				{"connectionStringPrimaryKey", amqp.SinkConfig{URL: "amqp://guest:guest@127.0.0.1:5673/", Protocol: amqp.Protocol10, Address: "twins"}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSettings(t, tt.body).(EventHubConfig).credentials()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.kafka, tt.kafka) || !reflect.DeepEqual(got.amqp, tt.amqp) {
				t.Errorf("credentials =\n%+v\n%+v\nwant\n%+v\n%+v", got.kafka, got.amqp, tt.kafka, tt.amqp)
			}
		})
	}
}

// TestTranslateServiceBus checks the AMQP 1.0 settings a ServiceBus endpoint becomes, one
// per connection string.
func TestTranslateServiceBus(t *testing.T) {
	got, err := parseSettings(t, `{"properties":{"endpointType":"ServiceBus","authenticationType":"KeyBased",
		"primaryConnectionString":"`+conn1+`","secondaryConnectionString":"`+conn2+`"}}`).(ServiceBusConfig).credentials()
	if err != nil {
		t.Fatal(err)
	}
	want := []namedConfig[amqp.SinkConfig]{
		{"primaryConnectionString", amqp.SinkConfig{URL: "amqps://send:KEY1+abc%2Fdef==@ns.servicebus.windows.net:5671/", Protocol: amqp.Protocol10, Address: "twins"}},
		{"secondaryConnectionString", amqp.SinkConfig{URL: "amqps://send:KEY2+ghi%2Fjkl==@ns.servicebus.windows.net:5671/", Protocol: amqp.Protocol10, Address: "twins"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("credentials =\n%+v\nwant\n%+v", got, want)
	}
}

// TestADTInvalid checks that a bad ADT definition is refused with every problem named by
// field, and no secret in the message.
func TestADTInvalid(t *testing.T) {
	const topic = `"TopicEndpoint":"https://t.westus2-1.eventgrid.azure.net/api/events"`
	tests := []struct {
		name, body string
		want       []string
	}{
		{"EventGrid without anything", `{"endpointType":"EventGrid"}`, []string{"TopicEndpoint: required", "accessKey1: required"}},
		{"EventGrid with a bad URL and schema", `{"endpointType":"EventGrid","TopicEndpoint":"t.eventgrid.azure.net","accessKey1":"` + key1 + `","eventSchema":"Custom"}`,
			[]string{"TopicEndpoint: not an absolute https URL", `eventSchema: "Custom"`}},
		{"identity-based", `{"endpointType":"EventGrid",` + topic + `,"accessKey1":"k","authenticationType":"IdentityBased","identity":{"type":"SystemAssigned"}}`,
			[]string{"authenticationType: IdentityBased needs an Azure managed identity", "identity: managed identities are not supported"}},
		{"dead letters to storage", `{"endpointType":"EventGrid",` + topic + `,"accessKey1":"k",
			"deadLetterSecret":"https://a.blob.core.windows.net/c?sig=` + key1 + `"}`, []string{"deadLetterSecret: dead-lettering to a storage container is not supported"}},
		{"unknown property", `{"endpointType":"EventGrid",` + topic + `,"accessKey1":"k","topicEndpointx":1}`, []string{"topicEndpointx"}},
		{"EventHub without a connection string", `{"endpointType":"EventHub","endpointUri":"sb://ns.servicebus.windows.net","entityPath":"twins"}`,
			[]string{"connectionStringPrimaryKey: required"}},
		{"EventHub with no event hub named", `{"endpointType":"EventHub","connectionStringPrimaryKey":"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=s;SharedAccessKey=` + key1 + `"}`,
			[]string{"entityPath: required when connectionStringPrimaryKey has no EntityPath"}},
		{"EventHub naming two event hubs", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `","entityPath":"other"}`,
			[]string{`entityPath: "other", but the EntityPath of connectionStringPrimaryKey is "twins"`}},
		{"EventHub with strings of two namespaces", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `",
			"connectionStringSecondaryKey":"` + strings.Replace(conn2, "sb://ns.", "sb://other.", 1) + `"}`,
			[]string{"connectionStringSecondaryKey: names other.servicebus.windows.net/twins, but connectionStringPrimaryKey names ns.servicebus.windows.net/twins"}},
		{"EventHub with another namespace's endpointUri", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `","endpointUri":"sb://other.servicebus.windows.net/"}`,
			[]string{"endpointUri: names other.servicebus.windows.net"}},
		{"EventHub with a bad connection string and protocol", `{"endpointType":"EventHub","protocol":"mqtt","connectionStringPrimaryKey":"Endpoint=sb://ns/;SharedAccessKey=` + key1 + `"}`,
			[]string{`protocol: "mqtt" is not one of kafka, amqp`, "connectionStringPrimaryKey: SharedAccessKeyName and SharedAccessKey: required"}},
		{"EventHub with a bad connection string", `{"endpointType":"EventHub","connectionStringPrimaryKey":"Endpoint=sb://ns/;SharedAccessKey=` + key1 + `"}`,
			[]string{"connectionStringPrimaryKey: SharedAccessKeyName and SharedAccessKey: required"}},
		{"EventHub over AMQP with a signature", `{"endpointType":"EventHub","protocol":"amqp",
			"connectionStringPrimaryKey":"Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=x&sig=` + key1 + `;EntityPath=twins"}`,
			[]string{"connectionStringPrimaryKey: a SharedAccessSignature needs the AMQP claims-based security exchange"}},
		{"EventHub whose event hub is no Kafka topic", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + strings.Replace(conn1, "EntityPath=twins", "EntityPath=a/b", 1) + `"}`,
			[]string{"connectionStringPrimaryKey: not usable over Kafka: topic:"}},
		{"ServiceBus without a connection string", `{"endpointType":"ServiceBus","secondaryConnectionString":"` + conn2 + `"}`,
			[]string{"primaryConnectionString: required"}},
		{"ARM resource with settings beside properties", `{"location":"westus2","properties":{"endpointType":"ServiceBus","primaryConnectionString":"` + conn1 + `"}}`,
			[]string{"location: not a member of an endpoint resource"}},
		{"ARM resource whose properties are no object", `{"properties":"ServiceBus"}`, []string{"properties: must be a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(json.RawMessage(tt.body), adtKinds)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), key1) {
				t.Errorf("the error shows a key: %v", err)
			}
		})
	}
}

// TestADTRedacted checks an ADT endpoint as GET shows it: ADT's properties with the secrets
// blanked as ADT blanks them, whether it was put flat or as an ARM resource.
func TestADTRedacted(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"EventGrid",
			`{"endpointType":"EventGrid","TopicEndpoint":"https://t.westus2-1.eventgrid.azure.net/api/events","accessKey1":"` + key1 + `","accessKey2":"` + key2 + `",
			"delivery":{"ttl":"1h0m0s"}}`,
			`{"endpointType":"EventGrid","authenticationType":"KeyBased","provisioningState":"Succeeded",
			"TopicEndpoint":"https://t.westus2-1.eventgrid.azure.net/api/events","accessKey1":"************","accessKey2":"************",
			"delivery":{"ttl":"1h0m0s"}}`},
		{"EventHub",
			`{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `","protocol":"amqp"}`,
			`{"endpointType":"EventHub","authenticationType":"KeyBased","provisioningState":"Succeeded",
			"connectionStringPrimaryKey":"************","protocol":"amqp"}`},
		// The request of ADT's DigitalTwinsEndpointPut_example.json (2023-01-31), its read-only
		// members added.
		{"ServiceBus as an ARM resource",
			`{"id":"/subscriptions/s/resourcegroups/g/providers/Microsoft.DigitalTwins/digitalTwinsInstances/i/endpoints/myServiceBus",
			"name":"myServiceBus","type":"Microsoft.DigitalTwins/digitalTwinsInstances/endpoints","properties":{
			"endpointType":"ServiceBus","authenticationType":"KeyBased",
			"primaryConnectionString":"Endpoint=sb://mysb.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=xyzxyzoX4=;EntityPath=abcabc",
			"secondaryConnectionString":"Endpoint=sb://mysb.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=xyzxyzoX4=;EntityPath=abcabc"}}`,
			`{"endpointType":"ServiceBus","authenticationType":"KeyBased","provisioningState":"Succeeded",
			"primaryConnectionString":"Endpoint=sb://***/;SharedAccessKeyName=***;SharedAccessKey=***;EntityPath=***",
			"secondaryConnectionString":"Endpoint=sb://***/;SharedAccessKeyName=***;SharedAccessKey=***;EntityPath=***"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def, err := Parse(json.RawMessage(tt.body), adtKinds)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(def.Redacted())
			if err != nil {
				t.Fatal(err)
			}
			var gotV, wantV any
			if err := json.Unmarshal(got, &gotV); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &wantV); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotV, wantV) {
				t.Errorf("Redacted = %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestADTFeeds checks that ADT's endpoint types tell whether they send where a source reads,
// through the connector settings they translate to.
func TestADTFeeds(t *testing.T) {
	for _, tc := range []struct {
		name, def string
		src       any
		want      bool
	}{
		{"ServiceBus topic, its subscription read", `{"endpointType":"ServiceBus","primaryConnectionString":"` + conn1 + `"}`,
			amqp.SourceConfig{URL: "amqps://ns.servicebus.windows.net", Protocol: amqp.Protocol10, Address: "twins/Subscriptions/tf"}, true},
		{"ServiceBus topic, another entity read", `{"endpointType":"ServiceBus","primaryConnectionString":"` + conn1 + `"}`,
			amqp.SourceConfig{URL: "amqps://ns.servicebus.windows.net", Protocol: amqp.Protocol10, Address: "commands"}, false},
		{"EventHub over Kafka, the hub read", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `"}`,
			kafka.SourceConfig{Brokers: []string{"ns.servicebus.windows.net:9093"}, Topics: []string{"twins"}}, true},
		{"EventHub over AMQP, the hub read", `{"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"` + conn1 + `"}`,
			amqp.SourceConfig{URL: "amqps://ns.servicebus.windows.net", Protocol: amqp.Protocol10, Address: "twins"}, true},
		{"EventHub, another namespace", `{"endpointType":"EventHub","connectionStringPrimaryKey":"` + conn1 + `"}`,
			kafka.SourceConfig{Brokers: []string{"other.servicebus.windows.net:9093"}, Topics: []string{"twins"}}, false},
		{"webhook: not a Feeder", `{"endpointType":"webhook","url":"http://127.0.0.1:1/x"}`, amqp.SourceConfig{}, false},
	} {
		def, err := Parse(json.RawMessage(tc.def), adtKinds)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := def.Feeds(tc.src); got != tc.want {
			t.Errorf("%s: Feeds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
