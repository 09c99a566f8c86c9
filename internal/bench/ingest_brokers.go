package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mqttPublishers is the number of connections the MQTT publisher spreads devices over.
const mqttPublishers = 4

// mqttPublisher publishes benchmark messages at QoS 1 on IoT Hub device-to-cloud topics,
// devices/{deviceId}/messages/events/$.mid={id}, over mqttPublishers connections.
type mqttPublisher struct {
	url, clientID string
	devices       int
	conns         []*mqttConn
}

// mqttConn is one publishing connection. Its tokens are awaited in order by a goroutine
// of its own, which notes the first error.
type mqttConn struct {
	client paho.Client
	tokens chan paho.Token
	done   chan struct{}

	mu  sync.Mutex
	err error
}

func newMQTTPublisher(ctx context.Context, cfg IngestConfig) (*mqttPublisher, error) {
	p := &mqttPublisher{url: cfg.MQTT, clientID: "twinflow-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36), devices: cfg.Devices}
	for i := range mqttPublishers {
		c, err := connectMQTT(ctx, cfg.MQTT, fmt.Sprintf("%s-pub%d", p.clientID, i), true)
		if err != nil {
			return nil, errors.Join(err, p.close(ctx))
		}
		mc := &mqttConn{client: c, tokens: make(chan paho.Token, 4*cfg.Window+cfg.Rate), done: make(chan struct{})}
		go mc.await()
		p.conns = append(p.conns, mc)
	}
	return p, nil
}

// connectMQTT connects to the broker at url as clientID, with a clean session or not.
func connectMQTT(ctx context.Context, url, clientID string, clean bool) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false))
	t := c.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", url, clientID, err)
	}
	return c, nil
}

func (c *mqttConn) await() {
	defer close(c.done)
	for t := range c.tokens {
		t.Wait()
		if err := t.Error(); err != nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = fmt.Errorf("publish: %w", err)
			}
			c.mu.Unlock()
		}
	}
}

func (c *mqttConn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (p *mqttPublisher) source() map[string]any {
	return map[string]any{
		"sourceType": "mqtt", "url": p.url, "topics": []string{"devices/+/messages/events/#"},
		"clientId": p.clientID, "qos": 1,
	}
}

func (p *mqttPublisher) chunk() int   { return 1 }
func (p *mqttPublisher) workers() int { return len(p.conns) }

func (p *mqttPublisher) send(_ context.Context, worker int, ns []int) error {
	c := p.conns[worker]
	if err := c.failed(); err != nil {
		return err
	}
	var body []byte
	for _, n := range ns {
		topic := "devices/" + twinID(n%p.devices) + "/messages/events/$.mid=m" + strconv.Itoa(n)
		body = ingestBody(body[:0], n, p.devices, false)
		c.tokens <- c.client.Publish(topic, 1, false, body)
	}
	return nil
}

// close waits for the publishes' acknowledgements, disconnects, and removes the session the
// source left on the broker, so that it queues nothing more for it.
func (p *mqttPublisher) close(ctx context.Context) error {
	var errs []error
	for _, c := range p.conns {
		close(c.tokens)
		<-c.done
		errs = append(errs, c.failed())
		c.client.Disconnect(250)
	}
	c, err := connectMQTT(ctx, p.url, p.clientID, true)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("remove the source's session: %w", err))...)
	}
	c.Disconnect(250)
	return errors.Join(errs...)
}

// kafkaTopic is the topic of the Kafka publisher, with kafkaPartitions partitions.
const (
	kafkaTopic      = "telemetry"
	kafkaPartitions = 8
)

// kafkaPublisher produces benchmark messages, keyed by device, to an in-process kfake
// cluster, with no linger: a record waits only for the produce request before it.
type kafkaPublisher struct {
	cluster *kfake.Cluster
	client  *kgo.Client
	devices int

	mu  sync.Mutex
	err error
}

func newKafkaPublisher(_ context.Context, cfg IngestConfig, logger *slog.Logger) (*kafkaPublisher, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, kafkaTopic))
	if err != nil {
		return nil, fmt.Errorf("start kfake cluster: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(kafkaTopic), kgo.ProducerLinger(0))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	logger.Info("kfake cluster", slog.Any("brokers", c.ListenAddrs()))
	return &kafkaPublisher{cluster: c, client: cl, devices: cfg.Devices}, nil
}

func (p *kafkaPublisher) source() map[string]any {
	return map[string]any{"sourceType": "kafka", "brokers": p.cluster.ListenAddrs(), "topics": []string{kafkaTopic}}
}

func (p *kafkaPublisher) chunk() int   { return 1 }
func (p *kafkaPublisher) workers() int { return 1 }

func (p *kafkaPublisher) send(ctx context.Context, _ int, ns []int) error {
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	if err != nil {
		return err
	}
	for _, n := range ns {
		rec := &kgo.Record{Key: []byte(twinID(n % p.devices)), Value: ingestBody(nil, n, p.devices, false)}
		p.client.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				p.mu.Lock()
				if p.err == nil {
					p.err = fmt.Errorf("produce: %w", err)
				}
				p.mu.Unlock()
			}
		})
	}
	return nil
}

func (p *kafkaPublisher) close(ctx context.Context) error {
	err := p.client.Flush(ctx)
	p.client.Close()
	p.cluster.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(err, p.err)
}
