package server

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/twin"
)

// hostCheck refuses requests whose Host header names a host the server does not answer to.
// Without authentication, anyone who can make a browser load a page can make it send
// requests to a server on the browser's machine or network: the page's own host name is
// pointed at the server's address after the page has loaded (DNS rebinding), and the
// browser then treats the server as the page's origin. Such requests still carry the
// attacker's host name in Host, which is what this check refuses.
type hostCheck struct {
	// enforce switches the check on. It is on unless the configuration allows any host
	// (config.AnyHost) or authentication is required: the check only matters while requests
	// are not authenticated, since a rebinding page cannot present the user's credentials.
	enforce bool
	// names are the allowed host names, lower case, without port; each is allowed alone
	// and with port, the port the server is bound to.
	names []string
	// hostPorts are the allowed "host:port" pairs, lower case.
	hostPorts []string
	port      string
}

// newHostCheck returns the check allowing the hosts of allowed (config.Server.AllowedHosts:
// a name alone allows it with the bound port too, a name with a port that port only) and,
// always, localhost, 127.0.0.1, [::1], the address the server is bound to (bound), the
// configured listen address and the service id, each alone or with the bound port (and the
// port they are given with).
func newHostCheck(allowed []string, bound net.Addr, listen, serviceID string) hostCheck {
	h := hostCheck{enforce: !slices.Contains(allowed, config.AnyHost)}
	_, h.port, _ = net.SplitHostPort(bound.String())
	add := func(name string, bare bool) {
		host, port, err := net.SplitHostPort(name)
		if err != nil { // no port
			host, bare = strings.Trim(name, "[]"), true
		}
		host = strings.ToLower(host)
		if host == "" || host == config.AnyHost {
			return
		}
		if bare {
			h.names = append(h.names, host)
		}
		if err == nil {
			h.hostPorts = append(h.hostPorts, net.JoinHostPort(host, port))
		}
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1", bound.String(), listen, serviceID} {
		add(name, true)
	}
	for _, name := range allowed {
		add(name, false)
	}
	return h
}

// allows reports whether a request with the Host header host may be served.
func (h hostCheck) allows(host string) bool {
	if !h.enforce {
		return true
	}
	host = strings.ToLower(host)
	name, port, err := net.SplitHostPort(host)
	if err != nil { // no port
		return slices.Contains(h.names, strings.Trim(host, "[]"))
	}
	return slices.Contains(h.hostPorts, host) || (port == h.port && slices.Contains(h.names, name))
}

// wrap returns next behind the check: a request naming a host it does not allow is answered
// 421 MisdirectedRequest with ADT's error body. 421 says what happened, that this server is
// not configured to answer for that authority (RFC 9110, 15.5.20), and stays apart from the
// 401 and 403 that authentication and roles answer.
func (h hostCheck) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.allows(r.Host) {
			api.WriteError(w, &twin.Error{Kind: twin.KindHostNotAllowed, Message: fmt.Sprintf(
				"This server does not answer to the host %q. If clients reach it under that name, add it to server.allowedHosts (--allowed-hosts).",
				truncate(r.Host))})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// truncate cuts s to at most 100 bytes for an error message.
func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
