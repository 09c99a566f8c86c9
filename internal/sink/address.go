package sink

import (
	"net"
	"net/url"
	"strings"
)

// ServerAddress returns the host and port a broker URL names, normalised so that two URLs
// of one server compare equal: the host in lower case, any loopback host as "localhost",
// and defaultPort when the URL gives none. It returns "" for a URL that does not parse or has
// no host. A URL without a scheme is read as host:port.
func ServerAddress(rawURL, defaultPort string) string {
	rawURL = strings.TrimSpace(rawURL)
	host := rawURL
	if strings.Contains(rawURL, "://") {
		u, err := url.Parse(rawURL)
		if err != nil {
			return ""
		}
		host = u.Host
	}
	if host == "" {
		return ""
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.Trim(host, "[]"), defaultPort
	}
	h = strings.ToLower(h)
	if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
		h = "localhost"
	}
	return net.JoinHostPort(h, port)
}

// SameServer reports whether the lists of server addresses a and b (as ServerAddress returns
// them; "" never matches) share one: the seed brokers of one cluster, or the URLs of one
// server, name it in any of them.
func SameServer(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x != "" && x == y {
				return true
			}
		}
	}
	return false
}

// Reaches reports whether the template t can expand to a name that filter matches, for a
// check that an endpoint does not publish where a source of twinflow reads. sep separates the
// levels of names and filters; one is the filter's wildcard for exactly one level and rest
// its wildcard for all the levels from there on, "" where the filter language has none (MQTT:
// '/', "+", "#"; NATS: '.', "*", ">"; AMQP topic exchanges: '.', "*", "#"). Each placeholder
// is read as any text, separators included, and so is everything after the first one: Reaches
// can report a match for a filter that only the template's literal prefix leads to, never
// misses one.
func (t Template) Reaches(filter string, sep byte, one, rest string) bool {
	var b strings.Builder
	open := false
	for _, p := range t.parts {
		if p.field != "" {
			open = true
			break
		}
		b.WriteString(p.literal)
	}
	fs := strings.Split(filter, string(sep))
	ps := strings.Split(b.String(), string(sep))
	for i, p := range ps {
		if i == len(fs) {
			return false
		}
		f := fs[i]
		switch {
		case rest != "" && f == rest:
			return true
		case open && i == len(ps)-1:
			// The level the first placeholder is in: what follows may end it in any way and
			// add any levels, so the rest of the filter can always be met.
			return (one != "" && f == one) || strings.HasPrefix(f, p)
		case (one != "" && f == one) || f == p:
		default:
			return false
		}
	}
	// The template is literal and matched every level of the filter it has.
	return len(fs) == len(ps) || (len(fs) == len(ps)+1 && rest != "" && fs[len(ps)] == rest)
}
