package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// ADT's endpoint types (ARM Microsoft.DigitalTwins/digitalTwinsInstances/endpoints,
// api-version 2023-01-31), accepted beside twinflow's own so that definitions written for
// ADT carry over. Each is translated to a connector: EventGrid to a webhook posting Event
// Grid schema events with the aeg-sas-key header, EventHub to Kafka (Event Hubs' Kafka
// endpoint) or AMQP 1.0, ServiceBus to AMQP 1.0. Secrets are blanked on read, as ADT does.
const (
	EventGridType  = "EventGrid"
	EventHubType   = "EventHub"
	ServiceBusType = "ServiceBus"
)

// EventGridKind returns the Kind of ADT's EventGrid endpoints (see EventGridConfig).
func EventGridKind() Kind { return KindOf(newEventGridSink, nil) }

// EventHubKind returns the Kind of ADT's EventHub endpoints (see EventHubConfig).
func EventHubKind() Kind { return KindOf(newEventHubSink, nil) }

// ServiceBusKind returns the Kind of ADT's ServiceBus endpoints (see ServiceBusConfig).
func ServiceBusKind() Kind { return KindOf(newServiceBusSink, nil) }

// The EventHub protocols.
const (
	// EventHubKafka produces to Event Hubs' Kafka endpoint: <namespace>:9093, TLS, SASL
	// PLAIN with user $ConnectionString and the connection string as password. The default.
	EventHubKafka = "kafka"
	// EventHubAMQP sends AMQP 1.0 to <namespace>:5671 (amqps), logging in with SASL PLAIN
	// as the shared access policy's name and key.
	EventHubAMQP = "amqp"
)

// The Event Grid topic input schemas an EventGrid endpoint can publish in, named as Event
// Grid names them.
const (
	EventGridSchema     = "EventGridSchema"
	CloudEventSchemaV10 = "CloudEventSchemaV1_0"
)

// The ports of the protocols, on Azure and on the local emulators
// (UseDevelopmentEmulator=true), when the connection string's Endpoint names none.
const (
	kafkaTLSPort      = "9093"
	kafkaEmulatorPort = "9092"
	amqpsPort         = "5671"
	amqpPort          = "5672"
)

// masked is what GET shows for a secret, as ADT shows an Event Hubs connection string.
const masked = "************"

// maskedServiceBus is what GET shows for a Service Bus connection string, as ADT shows it.
const maskedServiceBus = "Endpoint=sb://***/;SharedAccessKeyName=***;SharedAccessKey=***;EntityPath=***"

// adtCommon are the properties every ADT endpoint type shares.
type adtCommon struct {
	// AuthenticationType is KeyBased (the default) or IdentityBased, which needs an Azure
	// managed identity and is refused.
	AuthenticationType string `json:"authenticationType,omitempty"`
	// DeadLetterSecret and DeadLetterURI name a storage container for dead letters; they
	// are refused: twinflow keeps dead letters itself.
	DeadLetterSecret string `json:"deadLetterSecret,omitempty"`
	DeadLetterURI    string `json:"deadLetterUri,omitempty"`
	// Identity is the managed identity of IdentityBased endpoints; refused unless null.
	Identity json.RawMessage `json:"identity,omitempty"`
	// ProvisioningState and CreatedTime are read-only: ignored in a definition (so a
	// resource read from ADT can be put as it is), written on read.
	ProvisioningState string `json:"provisioningState,omitempty"`
	CreatedTime       string `json:"createdTime,omitempty"`

	// policy checks the connections of the connector settings built from the endpoint;
	// nil allows any.
	policy *netpolicy.Policy
}

// validate reports every problem with c.
func (c adtCommon) validate() []error {
	var errs []error
	switch c.AuthenticationType {
	case "", "KeyBased":
	case "IdentityBased":
		errs = append(errs, errors.New("authenticationType: IdentityBased needs an Azure managed identity, which twinflow does not have; use KeyBased"))
	default:
		errs = append(errs, fmt.Errorf("authenticationType: %q is not one of KeyBased, IdentityBased", c.AuthenticationType))
	}
	if len(c.Identity) > 0 && string(c.Identity) != "null" {
		errs = append(errs, errors.New("identity: managed identities are not supported; use authenticationType KeyBased"))
	}
	for _, f := range []struct{ name, v string }{{"deadLetterSecret", c.DeadLetterSecret}, {"deadLetterUri", c.DeadLetterURI}} {
		if f.v != "" {
			errs = append(errs, fmt.Errorf("%s: dead-lettering to a storage container is not supported; twinflow keeps an endpoint's dead letters itself (GET /endpoints/{name}/deadletters, and as files under delivery.deadLetterDir of the config file)", f.name))
		}
	}
	return errs
}

// adtRead returns the common properties as ADT shows them on read: twinflow's ADT endpoints
// are all key-based, and provisioned once stored. (createdTime is the endpoint's, beside.)
func adtRead() adtCommon {
	return adtCommon{AuthenticationType: "KeyBased", ProvisioningState: "Succeeded"}
}

// EventGridConfig is an ADT EventGrid endpoint: events are posted to an Event Grid topic.
type EventGridConfig struct {
	adtCommon
	// TopicEndpoint is the topic's URL, https://<topic>.<region>-1.eventgrid.azure.net/api/events.
	TopicEndpoint string `json:"TopicEndpoint"`
	// AccessKey1 is sent as the aeg-sas-key header; AccessKey2, if set, replaces it once the
	// topic refuses AccessKey1 with 401, and so on in turn.
	AccessKey1 string `json:"accessKey1,omitempty"`
	AccessKey2 string `json:"accessKey2,omitempty"`
	// EventSchema is the topic's input schema: EventGridSchema (the default) posts arrays
	// of Event Grid schema events as ADT does, the CloudEvents payload under data.data;
	// CloudEventSchemaV1_0 posts CloudEvents batches. ADT reads it from the topic; twinflow
	// cannot, so a CloudEvents topic must say so.
	EventSchema string `json:"eventSchema,omitempty"`
	// TLS configures the https connection (a private CA, for example).
	TLS sink.TLS `json:"tls,omitzero"`
}

// Validate reports every problem with c, each naming its field.
func (c EventGridConfig) Validate() error {
	errs := c.validate()
	if c.TopicEndpoint == "" {
		errs = append(errs, errors.New("TopicEndpoint: required"))
	} else if u, err := url.Parse(c.TopicEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, errors.New("TopicEndpoint: not an absolute https URL such as https://<topic>.<region>-1.eventgrid.azure.net/api/events"))
	}
	if c.AccessKey1 == "" {
		errs = append(errs, errors.New("accessKey1: required"))
	}
	switch c.EventSchema {
	case "", EventGridSchema, CloudEventSchemaV10:
	default:
		errs = append(errs, fmt.Errorf("eventSchema: %q is not one of %s, %s", c.EventSchema, EventGridSchema, CloudEventSchemaV10))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// WithPolicy returns c with every connection checked against p (see netpolicy).
func (c EventGridConfig) WithPolicy(p *netpolicy.Policy) EventGridConfig {
	c.policy = p
	return c
}

// Reach returns the topic's address and the files c reads.
func (c EventGridConfig) Reach() netpolicy.Reach { return c.webhook("").Reach() }

// Redacted returns c with its keys, and its topic URL's password and query string, blanked.
func (c EventGridConfig) Redacted() EventGridConfig {
	c.adtCommon = adtRead()
	c.TopicEndpoint = redact.URL(c.TopicEndpoint)
	c.AccessKey1 = mask(c.AccessKey1, masked)
	c.AccessKey2 = mask(c.AccessKey2, masked)
	return c
}

// webhook returns the webhook settings posting to c's topic with key.
func (c EventGridConfig) webhook(key string) webhook.SinkConfig {
	cfg := webhook.SinkConfig{
		URL:       c.TopicEndpoint,
		Mode:      webhook.EventGrid,
		OmitTopic: true,
		Headers:   map[string]string{"aeg-sas-key": key},
		TLS:       c.TLS,
	}.WithPolicy(c.policy)
	if c.EventSchema == CloudEventSchemaV10 {
		cfg.Mode, cfg.OmitTopic = webhook.Batched, false
	}
	return cfg
}

// credentials returns c's keys, as connector settings, in the order they are tried.
func (c EventGridConfig) credentials() []namedConfig[webhook.SinkConfig] {
	out := []namedConfig[webhook.SinkConfig]{{"accessKey1", c.webhook(c.AccessKey1)}}
	if c.AccessKey2 != "" {
		out = append(out, namedConfig[webhook.SinkConfig]{"accessKey2", c.webhook(c.AccessKey2)})
	}
	return out
}

func newEventGridSink(c EventGridConfig, logger *slog.Logger) (*failover, error) {
	return newFailover(c.credentials(), webhook.NewSink, logger)
}

// EventHubConfig is an ADT EventHub endpoint: events are sent to an event hub.
type EventHubConfig struct {
	adtCommon
	// ConnectionStringPrimaryKey is required; ConnectionStringSecondaryKey, if set, replaces
	// it once the namespace refuses it, and so on in turn (over Kafka the refusal shows when
	// the producer gives up on the batch, after its delivery timeout). Both name the same
	// namespace and event hub.
	ConnectionStringPrimaryKey   string `json:"connectionStringPrimaryKey,omitempty"`
	ConnectionStringSecondaryKey string `json:"connectionStringSecondaryKey,omitempty"`
	// EndpointURI (sb://<namespace>.servicebus.windows.net) and EntityPath (the event hub)
	// are ADT's identity-based addressing; with a connection string, EntityPath names the
	// event hub when the string has no EntityPath, and EndpointURI must name its namespace.
	EndpointURI string `json:"endpointUri,omitempty"`
	EntityPath  string `json:"entityPath,omitempty"`
	// Protocol is EventHubKafka (the default) or EventHubAMQP.
	Protocol string `json:"protocol,omitempty"`
	// TLS refines the TLS of the connection (a private CA, for example). TLS is on unless the
	// connection string says UseDevelopmentEmulator=true and TLS is not set.
	TLS sink.TLS `json:"tls,omitzero"`
}

// Validate reports every problem with c, each naming its field.
func (c EventHubConfig) Validate() error {
	errs := c.validate()
	switch c.Protocol {
	case "", EventHubKafka, EventHubAMQP:
	default:
		errs = append(errs, fmt.Errorf("protocol: %q is not one of %s, %s", c.Protocol, EventHubKafka, EventHubAMQP))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	_, err := c.credentials()
	return errors.Join(append(errs, err)...)
}

// WithPolicy returns c with every connection checked against p (see netpolicy).
func (c EventHubConfig) WithPolicy(p *netpolicy.Policy) EventHubConfig {
	c.policy = p
	return c
}

// Reach returns the namespace's address, in the protocol c uses, and the files c reads.
func (c EventHubConfig) Reach() netpolicy.Reach {
	creds, err := c.credentials()
	switch {
	case err != nil:
		return netpolicy.Reach{Files: c.TLS.Files("tls")}
	case len(creds.amqp) > 0:
		return creds.amqp[0].cfg.Reach()
	case len(creds.kafka) > 0:
		return creds.kafka[0].cfg.Reach()
	}
	return netpolicy.Reach{Files: c.TLS.Files("tls")}
}

// Redacted returns c with its connection strings blanked.
func (c EventHubConfig) Redacted() EventHubConfig {
	c.adtCommon = adtRead()
	c.ConnectionStringPrimaryKey = mask(c.ConnectionStringPrimaryKey, masked)
	c.ConnectionStringSecondaryKey = mask(c.ConnectionStringSecondaryKey, masked)
	return c
}

// eventHubCredentials are an EventHub endpoint's connector settings, one per connection
// string in the order they are tried, in the protocol it chose.
type eventHubCredentials struct {
	kafka []namedConfig[kafka.SinkConfig]
	amqp  []namedConfig[amqp.SinkConfig]
}

// credentials translates c's connection strings into connector settings.
func (c EventHubConfig) credentials() (eventHubCredentials, error) {
	strs, entity, err := connectionStrings(c.EndpointURI, c.EntityPath,
		namedString{"connectionStringPrimaryKey", c.ConnectionStringPrimaryKey},
		namedString{"connectionStringSecondaryKey", c.ConnectionStringSecondaryKey})
	if err != nil {
		return eventHubCredentials{}, err
	}
	var out eventHubCredentials
	for _, s := range strs {
		if c.Protocol == EventHubAMQP {
			cfg, err := amqpConfig(s, entity, c.TLS, c.policy)
			if err != nil {
				return eventHubCredentials{}, err
			}
			out.amqp = append(out.amqp, cfg)
			continue
		}
		cfg := kafka.SinkConfig{
			Topic: entity,
			SASL:  kafka.SASL{Mechanism: kafka.Plain, User: "$ConnectionString", Password: s.cs.raw},
			TLS:   c.TLS,
		}
		if s.cs.emulator && c.TLS.IsZero() {
			cfg.Brokers = []string{s.cs.address(kafkaEmulatorPort)}
		} else {
			cfg.Brokers = []string{s.cs.address(kafkaTLSPort)}
			cfg.TLS.Enabled = true
		}
		if err := cfg.Validate(); err != nil {
			return eventHubCredentials{}, fmt.Errorf("%s: not usable over Kafka: %w", s.name, err)
		}
		out.kafka = append(out.kafka, namedConfig[kafka.SinkConfig]{s.name, cfg.WithPolicy(c.policy)})
	}
	return out, nil
}

func newEventHubSink(c EventHubConfig, logger *slog.Logger) (*failoverPublisher, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	var f *failover
	if c.Protocol == EventHubAMQP {
		f, err = newFailover(creds.amqp, amqp.NewSink, logger)
	} else {
		f, err = newFailover(creds.kafka, kafka.NewSink, logger)
	}
	if err != nil {
		return nil, err
	}
	return &failoverPublisher{f}, nil
}

// ServiceBusConfig is an ADT ServiceBus endpoint: events are sent to a Service Bus topic
// over AMQP 1.0.
type ServiceBusConfig struct {
	adtCommon
	// PrimaryConnectionString is required; SecondaryConnectionString, if set, replaces it
	// once the namespace refuses it, and so on in turn. Both name the same namespace and
	// topic.
	PrimaryConnectionString   string `json:"primaryConnectionString,omitempty"`
	SecondaryConnectionString string `json:"secondaryConnectionString,omitempty"`
	// EndpointURI and EntityPath are as for EventHubConfig; EntityPath names the topic.
	EndpointURI string `json:"endpointUri,omitempty"`
	EntityPath  string `json:"entityPath,omitempty"`
	// TLS is as for EventHubConfig.
	TLS sink.TLS `json:"tls,omitzero"`
}

// Validate reports every problem with c, each naming its field.
func (c ServiceBusConfig) Validate() error {
	errs := c.validate()
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	_, err := c.credentials()
	return errors.Join(append(errs, err)...)
}

// WithPolicy returns c with every connection checked against p (see netpolicy).
func (c ServiceBusConfig) WithPolicy(p *netpolicy.Policy) ServiceBusConfig {
	c.policy = p
	return c
}

// Reach returns the namespace's address and the files c reads.
func (c ServiceBusConfig) Reach() netpolicy.Reach {
	if creds, err := c.credentials(); err == nil && len(creds) > 0 {
		return creds[0].cfg.Reach()
	}
	return netpolicy.Reach{Files: c.TLS.Files("tls")}
}

// Redacted returns c with its connection strings blanked.
func (c ServiceBusConfig) Redacted() ServiceBusConfig {
	c.adtCommon = adtRead()
	c.PrimaryConnectionString = mask(c.PrimaryConnectionString, maskedServiceBus)
	c.SecondaryConnectionString = mask(c.SecondaryConnectionString, maskedServiceBus)
	return c
}

// credentials translates c's connection strings into AMQP 1.0 settings.
func (c ServiceBusConfig) credentials() ([]namedConfig[amqp.SinkConfig], error) {
	strs, entity, err := connectionStrings(c.EndpointURI, c.EntityPath,
		namedString{"primaryConnectionString", c.PrimaryConnectionString},
		namedString{"secondaryConnectionString", c.SecondaryConnectionString})
	if err != nil {
		return nil, err
	}
	out := make([]namedConfig[amqp.SinkConfig], 0, len(strs))
	for _, s := range strs {
		cfg, err := amqpConfig(s, entity, c.TLS, c.policy)
		if err != nil {
			return nil, err
		}
		out = append(out, cfg)
	}
	return out, nil
}

func newServiceBusSink(c ServiceBusConfig, logger *slog.Logger) (*failoverPublisher, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	f, err := newFailover(creds, amqp.NewSink, logger)
	if err != nil {
		return nil, err
	}
	return &failoverPublisher{f}, nil
}

// namedString is a connection string with the name of the property that holds it.
type namedString struct{ name, s string }

// parsedString is a parsed connection string with the name of its property.
type parsedString struct {
	name string
	cs   connectionString
}

// connectionStrings parses the primary connection string (required) and the secondary (if
// set) and returns them with the entity they name. Both must name the same namespace and
// entity, and endpointURI, if set, that namespace.
func connectionStrings(endpointURI, entityPath string, primary, secondary namedString) ([]parsedString, string, error) {
	if primary.s == "" {
		return nil, "", fmt.Errorf("%s: required (with authenticationType KeyBased)", primary.name)
	}
	var out []parsedString
	var entity string
	var errs []error
	for _, ns := range []namedString{primary, secondary} {
		if ns.s == "" {
			continue
		}
		cs, err := parseConnectionString(ns.s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ns.name, err))
			continue
		}
		e, err := cs.entity(ns.name, entityPath)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(out) > 0 {
			if p := out[0].cs; !strings.EqualFold(p.host, cs.host) || p.port != cs.port || entity != e {
				errs = append(errs, fmt.Errorf("%s: names %s/%s, but %s names %s/%s", ns.name, cs.host, e, primary.name, p.host, entity))
				continue
			}
		}
		entity = e
		out = append(out, parsedString{ns.name, cs})
	}
	if endpointURI != "" && len(out) > 0 {
		host, _, err := parseNamespaceURI(endpointURI)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("endpointUri: %w", err))
		case !strings.EqualFold(host, out[0].cs.host):
			errs = append(errs, fmt.Errorf("endpointUri: names %s, but %s names %s", host, primary.name, out[0].cs.host))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, "", err
	}
	return out, entity, nil
}

// amqpConfig returns the AMQP 1.0 settings sending to entity with s: amqps (amqp for an
// emulator without TLS settings), logging in with SASL PLAIN as the shared access policy's
// name and key, which Service Bus and Event Hubs both accept, with connections checked
// against p.
func amqpConfig(s parsedString, entity string, tls sink.TLS, p *netpolicy.Policy) (namedConfig[amqp.SinkConfig], error) {
	if s.cs.sas != "" {
		return namedConfig[amqp.SinkConfig]{}, fmt.Errorf("%s: a SharedAccessSignature needs the AMQP claims-based security exchange ($cbs), which twinflow does not implement; use SharedAccessKeyName and SharedAccessKey", s.name)
	}
	u := url.URL{Scheme: "amqps", User: url.UserPassword(s.cs.keyName, s.cs.key), Host: s.cs.address(amqpsPort), Path: "/"}
	if s.cs.emulator && tls.IsZero() {
		u.Scheme, u.Host = "amqp", s.cs.address(amqpPort)
	}
	cfg := amqp.SinkConfig{URL: u.String(), Protocol: amqp.Protocol10, Address: entity, TLS: tls}
	if err := cfg.Validate(); err != nil {
		return namedConfig[amqp.SinkConfig]{}, fmt.Errorf("%s: not usable over AMQP: %w", s.name, err)
	}
	return namedConfig[amqp.SinkConfig]{s.name, cfg.WithPolicy(p)}, nil
}

// mask returns m in place of a set secret s.
func mask(s, m string) string {
	if s == "" {
		return ""
	}
	return m
}

// Feeds reports whether the event hub c sends to is what source reads, over the protocol c
// uses (see kafka.SinkConfig.Feeds and amqp.SinkConfig.Feeds).
func (c EventHubConfig) Feeds(source any) bool {
	creds, err := c.credentials()
	if err != nil {
		return false
	}
	for _, k := range creds.kafka {
		if k.cfg.Feeds(source) {
			return true
		}
	}
	for _, a := range creds.amqp {
		if a.cfg.Feeds(source) {
			return true
		}
	}
	return false
}

// Feeds reports whether the Service Bus topic c sends to is what source reads (see
// amqp.SinkConfig.Feeds).
func (c ServiceBusConfig) Feeds(source any) bool {
	creds, err := c.credentials()
	if err != nil {
		return false
	}
	for _, a := range creds {
		if a.cfg.Feeds(source) {
			return true
		}
	}
	return false
}
