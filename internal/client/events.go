package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Event is one message of the server's event stream: a change event as a CloudEvent in
// structured mode.
type Event struct {
	// ID is the message's id: the change log sequence number, which a later stream may resume
	// after.
	ID string
	// Type is the CloudEvents type, e.g. Microsoft.DigitalTwins.Twin.Update.
	Type string
	// Data is the CloudEvent, one line of JSON.
	Data json.RawMessage
}

// StreamEvents reads GET /events, the server's event stream of change events that match
// filter (an ADT event route filter; empty for all), and calls fn with each event in the
// order the server sent them. A non-empty lastEventID resumes after that event. It returns
// when ctx ends (with ctx's error), when the server ends the stream (with io.EOF), or at fn's
// first error, which it returns.
func (c *Client) StreamEvents(ctx context.Context, filter, lastEventID string, fn func(Event) error) error {
	r := request{method: http.MethodGet, path: "/events", header: http.Header{"Accept": {"text/event-stream"}}}
	if filter != "" {
		r.query = url.Values{"filter": {filter}}
	}
	if lastEventID != "" {
		r.header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.do(ctx, c.stream, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	err = ReadSSE(resp.Body, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// ReadSSE parses a text/event-stream from r and calls fn with each message that has data.
// Comment lines (": keep-alive") and fields other than id, event and data are skipped; the
// lines of a message's data are joined with newlines. It returns io.EOF at the end of r, a
// read error, or fn's first error.
func ReadSSE(r io.Reader, fn func(Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var (
		ev   Event
		data []string
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				ev.Data = json.RawMessage(strings.Join(data, "\n"))
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = Event{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Type = value
		case "data":
			data = append(data, value)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("read the event stream: %w", err)
	}
	return io.EOF
}
