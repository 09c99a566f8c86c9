package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
)

// sseEvent is one server-sent event as a client parses it.
type sseEvent struct {
	id, typ, data string
}

// openStream starts GET /events with query and header (name, value pairs) and returns a
// channel of its events, closed when the stream ends, and the response.
func openStream(t *testing.T, ctx context.Context, base, query string, header ...string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?api-version=2023-10-31"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sseEvent, 100)
	if resp.StatusCode != http.StatusOK {
		close(events)
		return events, resp
	}
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.data != "" {
					events <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return events, resp
}

func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10 s")
	}
	return sseEvent{}
}

// TestEventStream reads GET /events of a real server: filtered events in order as CloudEvents
// with their log sequence as id, a resume from Last-Event-ID, a bad filter refused, and the
// stream ended by shutdown without holding it up.
func TestEventStream(t *testing.T) {
	s, stop := start(t, Config{Config: config.Config{History: config.History{Mode: config.HistoryOff}}}, nil)
	c := apiClient{t, s.URL()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	_, resp := openStream(t, ctx, s.URL(), "&filter=type+%3D%3D")
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("x-ms-error-code") != "EventRouteFilterInvalid" {
		t.Fatalf("a bad filter = %d %s, want 400 EventRouteFilterInvalid", resp.StatusCode, resp.Header.Get("x-ms-error-code"))
	}
	resp.Body.Close()

	all, resp := openStream(t, ctx, s.URL(), "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	updates, _ := openStream(t, ctx, s.URL(), "&filter="+strings.ReplaceAll("type = 'Microsoft.DigitalTwins.Twin.Update'", " ", "+"))

	c.do("POST", "/models", `[{"@id":"dtmi:test:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		"contents":[{"@type":"Property","name":"temp","schema":"double"}]}]`, http.StatusCreated)
	c.do("PUT", "/digitaltwins/r1", `{"$metadata":{"$model":"dtmi:test:Room;1"},"temp":20}`, http.StatusOK)
	c.do("PATCH", "/digitaltwins/r1", `[{"op":"replace","path":"/temp","value":21}]`, http.StatusNoContent)

	created := next(t, all)
	if created.typ != "Microsoft.DigitalTwins.Twin.Create" {
		t.Fatalf("first event %+v, want Twin.Create", created)
	}
	var ce struct {
		SpecVersion string          `json:"specversion"`
		Type        string          `json:"type"`
		Subject     string          `json:"subject"`
		Data        json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(created.data), &ce); err != nil || ce.SpecVersion != "1.0" || ce.Subject != "r1" ||
		ce.Type != created.typ || !strings.Contains(string(ce.Data), `"temp":20`) {
		t.Fatalf("Twin.Create data %s (%v), want a CloudEvent about r1", created.data, err)
	}
	updated := next(t, all)
	if updated.typ != "Microsoft.DigitalTwins.Twin.Update" {
		t.Fatalf("second event %+v, want Twin.Update", updated)
	}
	if u := next(t, updates); u.id != updated.id || u.typ != updated.typ {
		t.Fatalf("the filtered stream sent %+v first, want only %+v", u, updated)
	}

	// A client that reconnects with the id of the last event it saw gets what followed.
	resumed, _ := openStream(t, ctx, s.URL(), "", "Last-Event-ID", created.id)
	if e := next(t, resumed); e.id != updated.id {
		t.Fatalf("resumed after %s at %+v, want %s", created.id, e, updated.id)
	}
	if _, resp := openStream(t, ctx, s.URL(), "&from=x"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("from=x = %d, want 400", resp.StatusCode)
	}

	// Shutdown ends the open streams instead of waiting for them.
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("shutdown with open event streams took %v", d)
	}
	for range all {
	}
}
