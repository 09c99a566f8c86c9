package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkDelivery compares the sink, MQTT 5 and 3.1.1, with paho.golang publishing the
// same MQTT 5 messages directly, one QoS 1 publish after another, to Mosquitto.
func BenchmarkDelivery(b *testing.B) {
	testenv.Mosquitto(b)
	for _, version := range []int{5, 3} {
		name := "sink-v5"
		if version == 3 {
			name = "sink-v3"
		}
		b.Run(name, func(b *testing.B) {
			s := newSink(b, SinkConfig{URL: "tcp://" + broker, Version: version, Topic: prefix() + "/{twinId}"})
			defer s.Close()
			sinktest.Bench(b, s.Send)
		})
	}
	b.Run("direct-v5", func(b *testing.B) {
		s := newSink(b, SinkConfig{URL: "tcp://" + broker, Topic: "unused"})
		defer s.Close()
		cm := s.pub.(*publisher5).cm
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		defer cancel()
		if err := cm.AwaitConnection(ctx); err != nil {
			b.Fatal(err)
		}
		topic := prefix() + "/"
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			for i := range events {
				if _, err := cm.Publish(ctx, Publish5(topic+events[i].Subject, &events[i])); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
