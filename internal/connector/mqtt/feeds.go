package mqtt

import (
	"cmp"
	"strings"

	"github.com/twinflow/twinflow/internal/sink"
)

// Feeds reports whether the endpoint c publishes where source, when it is an MQTT
// SourceConfig, subscribes: the same broker (host and port) and a topic filter of the source
// that a topic of c's template can match (see sink.Template.Reaches; a shared subscription's
// group is left out). It can report a match for a filter only the template's literal prefix
// leads to.
func (c SinkConfig) Feeds(source any) bool {
	src, ok := source.(SourceConfig)
	if !ok || !sink.SameServer([]string{brokerAddress(c.URL)}, []string{brokerAddress(src.URL)}) {
		return false
	}
	tmpl, err := sink.ParseTemplate(cmp.Or(c.Topic, DefaultTopic))
	if err != nil {
		return false
	}
	for _, f := range src.Topics {
		if rest, ok := strings.CutPrefix(f, "$share/"); ok {
			_, f, _ = strings.Cut(rest, "/")
		}
		if tmpl.Reaches(f, '/', "+", "#") {
			return true
		}
	}
	return false
}

// brokerAddress returns the normalised host and port of a broker URL (see
// sink.ServerAddress), "" when it does not parse.
func brokerAddress(s string) string {
	u, err := parseBrokerURL(s, true)
	if err != nil {
		return ""
	}
	return sink.ServerAddress(u.Host, "")
}
