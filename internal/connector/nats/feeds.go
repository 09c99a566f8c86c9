package nats

import (
	"cmp"
	"strings"

	"github.com/twinflow/twinflow/internal/sink"
)

// defaultPort is the port of a server URL that names none.
const defaultPort = "4222"

// Feeds reports whether the endpoint c publishes where source, when it is a NATS
// SourceConfig, consumes: a server the two share, and either a subject filter of the source
// that a subject of c's template can match (see sink.Template.Reaches; a stream captures a
// subject no other stream does, so the filter's stream stores it), or, for a source of a
// whole stream, c's Stream naming that stream. A source of a whole stream that c does not
// name cannot be told from here; the hop limit stops a loop through it.
func (c SinkConfig) Feeds(source any) bool {
	src, ok := source.(SourceConfig)
	if !ok || !sink.SameServer(servers(c.URL), servers(src.URL)) {
		return false
	}
	if len(src.Subjects) == 0 {
		return c.Stream != "" && c.Stream == src.Stream
	}
	tmpl, err := sink.ParseTemplate(cmp.Or(c.Subject, DefaultSubject))
	if err != nil {
		return false
	}
	for _, f := range src.Subjects {
		if tmpl.Reaches(f, '.', "*", ">") {
			return true
		}
	}
	return false
}

// servers returns the normalised addresses of a comma-separated list of server URLs (see
// sink.ServerAddress).
func servers(urls string) []string {
	var out []string
	for u := range strings.SplitSeq(urls, ",") {
		out = append(out, sink.ServerAddress(u, defaultPort))
	}
	return out
}
