package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// KeepAliveInterval is how long an event stream stays silent at most: after that much time
// without an event it sends a comment line, so proxies and clients see the stream alive.
const KeepAliveInterval = 15 * time.Second

// eventStreamBatch is the most records an event stream reads from the log at once.
const eventStreamBatch = 512

// Events serves GET /events, the live stream of change events.
type Events struct {
	// Log is the change log the stream reads.
	Log store.Log
	// Stop, when closed, ends every stream, so that a server shutting down need not wait
	// for streams that would never end by themselves.
	Stop <-chan struct{}
}

// eventOperations is GET /events, none when Config.Events is nil.
func (a *API) eventOperations() []operation {
	if a.cfg.Events == nil {
		return nil
	}
	return []operation{{http.MethodGet, "/events", auth.RoleReader, a.streamEvents}}
}

// streamEvents serves GET /events: the change events (the ones event routes deliver) as
// server-sent events, text/event-stream. Each event is one message whose id is its sequence
// number in the change log, whose event field is its CloudEvents type and whose data is the
// event in CloudEvents' structured JSON form, on one line.
//
// The stream starts after the newest event, or after the sequence number in the
// Last-Event-ID header (what a reconnecting EventSource sends) or the from parameter, while
// the log still holds the events after it; events pruned meanwhile are announced by a comment
// and skipped. The filter parameter, an event route filter, selects the events sent; a filter
// that does not compile is 400 EventRouteFilterInvalid, before the stream starts. A comment
// is sent after KeepAliveInterval of silence. The stream ends when the client goes away or
// the server shuts down.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	var filter *eventroute.Filter
	if src, ok := r.URL.Query()["filter"]; ok {
		f, err := eventroute.Compile(src[0])
		if err != nil {
			return routeError("", err)
		}
		filter = f
	}
	log := a.cfg.Events.Log
	after := log.Last()
	from := r.Header.Get("Last-Event-ID")
	if q := queryValue(r, "from"); q != "" {
		from = q
	}
	if from != "" {
		seq, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			return twin.InvalidArgument(fmt.Sprintf("The event stream position %q is not a sequence number: give the id of the last event received.", from))
		}
		after = min(seq, after)
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if a.cfg.Events.Stop != nil {
		go func() {
			select {
			case <-a.cfg.Events.Stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tells a proxy in front not to buffer the stream
	w.WriteHeader(http.StatusOK)
	out := bufio.NewWriter(w)
	flush := func() error {
		if err := out.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	// A comment first, so the client sees the stream open before the first event.
	fmt.Fprint(out, ": twinflow event stream\n\n")
	if err := flush(); err != nil {
		return nil
	}
	for {
		readCtx, readCancel := context.WithTimeout(ctx, KeepAliveInterval)
		recs, err := log.Read(readCtx, after, eventStreamBatch)
		readCancel()
		switch {
		case ctx.Err() != nil:
			return nil // the client went away or the server is stopping
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprint(out, ": keep-alive\n\n")
		case err != nil:
			a.logger.Warn("event stream: read the change log", "error", err)
			return nil // the status line is sent: the client reconnects with Last-Event-ID
		}
		for _, rec := range recs {
			if rec.Seq > after+1 {
				fmt.Fprintf(out, ": events %d to %d were pruned from the log\n\n", after+1, rec.Seq-1)
			}
			after = rec.Seq
			if filter != nil && !filter.Match(&rec.Event) {
				continue
			}
			if err := writeEvent(out, rec); err != nil {
				a.logger.Warn("event stream: encode an event", "seq", rec.Seq, "error", err)
				return nil
			}
		}
		if err := flush(); err != nil {
			return nil // the client went away
		}
	}
}

// writeEvent writes rec as one server-sent event.
func writeEvent(out *bufio.Writer, rec event.Record) error {
	data, err := json.Marshal(rec.Event)
	if err != nil {
		return err
	}
	// json.Marshal escapes the line breaks inside strings, so data is one line; the type is
	// a CloudEvents type from the log, which has none either.
	_, err = fmt.Fprintf(out, "id: %d\nevent: %s\ndata: %s\n\n", rec.Seq, rec.Event.Type, data)
	return err
}
