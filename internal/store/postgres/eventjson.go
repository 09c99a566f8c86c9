package postgres

import (
	"encoding/json"
	"errors"

	"github.com/twinflow/twinflow/internal/event"
)

// errInvalidData is returned by encodeEvent when an event's Data is not valid JSON.
var errInvalidData = errors.New("data is not valid JSON")

// encodeEvent returns the JSON form of e as the log keeps it (its Depth goes in a column of
// its own). It fails if e.Data is not valid JSON.
func encodeEvent(e *event.Event) ([]byte, error) {
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return nil, errInvalidData
	}
	return json.Marshal(e)
}

// decodeEvent decodes into e a log record's event, as encodeEvent wrote it.
func decodeEvent(buf []byte, e *event.Event) error {
	*e = event.Event{}
	return json.Unmarshal(buf, e)
}
