package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// connectionString is an Event Hubs or Service Bus connection string, as the Azure portal
// gives it:
//
//	Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>[;EntityPath=<name>]
//
// or with SharedAccessSignature=<token> in place of the key name and key, and with
// UseDevelopmentEmulator=true for the local Event Hubs and Service Bus emulators, which speak
// without TLS. As the Azure SDKs do, parse reads keys case-insensitively and ignores keys it
// does not know (TransportType, ...).
type connectionString struct {
	// raw is the string as given, the password of Event Hubs' Kafka login.
	raw string
	// host is the namespace's host name, port Endpoint's port ("" when it has none, as
	// Azure's never do; an emulator's may).
	host, port string
	// keyName and key are the shared access policy and its key; sas is a shared access
	// signature token instead of them.
	keyName, key, sas string
	// entityPath names the event hub or topic; empty for a namespace-level string.
	entityPath string
	// emulator is UseDevelopmentEmulator=true.
	emulator bool
}

// parseConnectionString reads s. Its errors never quote s, which holds a secret.
func parseConnectionString(s string) (connectionString, error) {
	cs := connectionString{raw: strings.TrimSpace(s)}
	var endpoint string
	for part := range strings.SplitSeq(cs.raw, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return connectionString{}, errors.New("not a connection string: want Key=Value pairs separated by ';'")
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "endpoint":
			endpoint = v
		case "sharedaccesskeyname":
			cs.keyName = v
		case "sharedaccesskey":
			cs.key = v
		case "sharedaccesssignature":
			cs.sas = v
		case "entitypath":
			cs.entityPath = v
		case "usedevelopmentemulator":
			cs.emulator = strings.EqualFold(v, "true")
		}
	}
	var err error
	if cs.host, cs.port, err = parseNamespaceURI(endpoint); err != nil {
		return connectionString{}, fmt.Errorf("Endpoint: %w", err)
	}
	switch {
	case cs.sas != "" && (cs.keyName != "" || cs.key != ""):
		return connectionString{}, errors.New("give SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature, not both")
	case cs.sas == "" && (cs.keyName == "" || cs.key == ""):
		return connectionString{}, errors.New("SharedAccessKeyName and SharedAccessKey: required")
	}
	return cs, nil
}

// parseNamespaceURI reads a namespace address, sb://<host>[:port][/], into its host and
// port.
func parseNamespaceURI(s string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "sb" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		// s is not quoted: a malformed connection string may have run its key into it.
		return "", "", errors.New("not a namespace address sb://<namespace>.servicebus.windows.net/")
	}
	return u.Hostname(), u.Port(), nil
}

// address returns host:port of the namespace for a protocol whose port is defaultPort
// when the connection string names none.
func (cs connectionString) address(defaultPort string) string {
	port := cs.port
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(cs.host, port)
}

// entity returns the entity the connection string and the entityPath property name
// together: the string's EntityPath, else entityPath; field names the connection string's
// property in errors.
func (cs connectionString) entity(field, entityPath string) (string, error) {
	switch {
	case cs.entityPath != "" && entityPath != "" && cs.entityPath != entityPath:
		return "", fmt.Errorf("entityPath: %q, but the EntityPath of %s is %q", entityPath, field, cs.entityPath)
	case cs.entityPath != "":
		return cs.entityPath, nil
	case entityPath != "":
		return entityPath, nil
	}
	return "", fmt.Errorf("entityPath: required when %s has no EntityPath", field)
}
