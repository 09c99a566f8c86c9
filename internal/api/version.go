package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/twin"
)

// apiVersion is a supported value of the api-version query parameter.
type apiVersion string

// apiVersions lists every api-version twinflow accepts, oldest first. The 2021 and 2023 previews
// are accepted because they change nothing twinflow serves (2022-05-31's specification is
// 2021-06-30-preview's, unchanged).
//
// The first preview, 2020-05-31-preview, is refused like any unknown version. It is another
// dialect: telemetry takes dt-id and dt-timestamp headers instead of Message-Id and
// Telemetry-Source-Time, query results come in "items" instead of "value", lists take
// x-ms-max-item-count instead of max-items-per-page, and its specification gives statuses
// without error codes. Accepting it and answering in today's dialect would mislead its
// clients; honouring it would mean a second, partly guessed wire format for a version today's
// SDKs do not send.
var apiVersions = []apiVersion{
	"2020-10-31",
	"2021-06-30-preview",
	"2022-05-31",
	"2023-02-27-preview",
	"2023-06-30",
	"2023-10-31",
}

// sourceTimeVersion is the first api-version whose documents carry sourceTime and
// $metadata.$lastUpdateTime.
const sourceTimeVersion apiVersion = "2022-05-31"

// hidesSourceTime reports whether documents answered at v leave out sourceTime and
// $metadata.$lastUpdateTime, as ADT does before 2022-05-31. Patches that write sourceTime are
// accepted at every version: older versions only hide it.
func (v apiVersion) hidesSourceTime() bool {
	// The versions are dates, so they order as strings.
	return v < sourceTimeVersion
}

// parseAPIVersion returns the api-version of a request whose api-version query parameter is
// raw. A missing one is 400 MissingApiVersionParameter and an unknown one 400
// UnsupportedApiVersion, with the messages ADT's sibling Azure services use.
func parseAPIVersion(raw string) (apiVersion, error) {
	if raw == "" {
		return "", &twin.Error{
			Kind:    twin.KindAPIVersionMissing,
			Message: "The api-version query parameter (?api-version=) is required for all requests.",
		}
	}
	v := apiVersion(raw)
	if !slices.Contains(apiVersions, v) {
		names := make([]string, len(apiVersions))
		for i, s := range apiVersions {
			names[i] = string(s)
		}
		return "", &twin.Error{
			Kind:    twin.KindAPIVersionUnsupported,
			Message: fmt.Sprintf("The api-version '%s' is not supported. Supported versions: %s.", raw, strings.Join(names, ", ")),
		}
	}
	return v, nil
}

// twinDoc returns a twin document as version v shows it.
func twinDoc(doc json.RawMessage, v apiVersion) (json.RawMessage, error) {
	if !v.hidesSourceTime() {
		return doc, nil
	}
	return rewriteObject(doc, func(o object) (object, error) {
		for i, m := range o {
			if m.key == "$metadata" {
				if !isObject(m.value) {
					continue
				}
				md, err := rewriteObject(m.value, stripMetadata)
				if err != nil {
					return nil, err
				}
				o[i].value = md
				continue
			}
			// A component is an object property holding its own $metadata; DTDL names never
			// start with "$", so an object property cannot be mistaken for one.
			if isObject(m.value) {
				c, err := componentDoc(m.value, v)
				if err != nil {
					return nil, err
				}
				o[i].value = c
			}
		}
		return o, nil
	})
}

// componentDoc returns a component document as version v shows it.
func componentDoc(doc json.RawMessage, v apiVersion) (json.RawMessage, error) {
	if !v.hidesSourceTime() {
		return doc, nil
	}
	return rewriteObject(doc, func(o object) (object, error) {
		for i, m := range o {
			if m.key != "$metadata" || !isObject(m.value) {
				continue
			}
			md, err := rewriteObject(m.value, stripMetadata)
			if err != nil {
				return nil, err
			}
			o[i].value = md
		}
		return o, nil
	})
}

// stripMetadata removes $lastUpdateTime from a $metadata object and sourceTime from each of
// its per-property entries.
func stripMetadata(md object) (object, error) {
	md = md.without("$lastUpdateTime")
	for i, m := range md {
		if !isObject(m.value) {
			continue
		}
		entry, err := rewriteObject(m.value, func(e object) (object, error) {
			return e.without("sourceTime"), nil
		})
		if err != nil {
			return nil, err
		}
		md[i].value = entry
	}
	return md, nil
}

// object is a JSON object that keeps its members' order, so documents rewritten for older
// api-versions read like the ones newer versions get.
type object []member

type member struct {
	key   string
	value json.RawMessage
}

func (o object) without(key string) object {
	return slices.DeleteFunc(o, func(m member) bool { return m.key == key })
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// rewriteObject decodes the JSON object raw, applies fn and encodes the result.
func rewriteObject(raw json.RawMessage, fn func(object) (object, error)) (json.RawMessage, error) {
	o, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	if o, err = fn(o); err != nil {
		return nil, err
	}
	return o.encode(), nil
}

func decodeObject(raw json.RawMessage) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("decode stored document: not a JSON object")
	}
	o := object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("decode stored document: %w", err)
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("decode stored document member %q: %w", key, err)
		}
		o = append(o, member{key: key, value: value})
	}
	return o, nil
}

func (o object) encode() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(m.key)
		b.Write(key)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}
