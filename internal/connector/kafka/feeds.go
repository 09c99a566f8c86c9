package kafka

import (
	"slices"

	"github.com/twinflow/twinflow/internal/sink"
)

// defaultPort is the port of a broker address that names none.
const defaultPort = "9092"

// Feeds reports whether the endpoint c produces to a topic source, when it is a Kafka
// SourceConfig, reads: one of c's seed brokers among the source's and c's topic among its
// topics.
func (c SinkConfig) Feeds(source any) bool {
	src, ok := source.(SourceConfig)
	return ok && slices.Contains(src.Topics, c.Topic) && sink.SameServer(addresses(c.Brokers), addresses(src.Brokers))
}

// addresses returns the normalised addresses of brokers (see sink.ServerAddress).
func addresses(brokers []string) []string {
	out := make([]string, len(brokers))
	for i, b := range brokers {
		out[i] = sink.ServerAddress(b, defaultPort)
	}
	return out
}
