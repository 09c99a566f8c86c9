package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/jsontext"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// ceilingRing is the number of distinct rows the ceiling's Next hands out in turn; they are
// made before the measurement, so it costs what SQLite does and little more.
const ceilingRing = 4096

// ceilingRows returns n twins as the server stores them after a PUT of their benchmark body,
// and a sqlite.Ceiling Next function handing out the rows a PATCH of random ones writes: the
// twin's document with a new ETag, and its Twin.Update event as the twin service emits it
// (service id, trace context, and the patch encoded by twin.Patch.AppendJSON).
func ceilingRows(n int, serviceID string) ([]store.Twin, func() (store.Twin, event.Event), error) {
	now := twin.FormatTime(time.Now())
	twins := make([]store.Twin, n)
	for i := range twins {
		etag := twin.NewETag()
		doc, err := twinDocument(i, etag, now)
		if err != nil {
			return nil, nil, err
		}
		twins[i] = store.Twin{ID: twinID(i), ModelID: modelID, ETag: etag, Doc: doc}
	}
	type row struct {
		twin  store.Twin
		event event.Event
	}
	ring := make([]row, ceilingRing)
	for k := range ring {
		t := twins[mathrand.N(n)]
		t.ETag = twin.NewETag()
		p, err := twin.ParsePatch(patchBody(1+mathrand.N(3), k))
		if err != nil {
			return nil, nil, fmt.Errorf("parse benchmark patch: %w", err)
		}
		data := jsontext.AppendString(append([]byte(nil), `{"modelId":`...), modelID)
		data = append(data, `,"patch":`...)
		if data, err = p.AppendJSON(data); err != nil {
			return nil, nil, fmt.Errorf("encode benchmark patch: %w", err)
		}
		ring[k] = row{twin: t, event: event.Event{
			ID: uuid.NewString(), Source: serviceID, SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
			Subject: t.ID, Time: now, DataContentType: "application/json", TraceParent: newTraceParent(),
			Data: append(data, '}'),
		}}
	}
	next := 0
	return twins, func() (store.Twin, event.Event) {
		r := &ring[next%len(ring)]
		next++
		return r.twin, r.event
	}, nil
}

// newTraceParent returns a random W3C traceparent, as the API starts for a request
// that carries none.
func newTraceParent() string {
	var id [24]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return "00-" + hex.EncodeToString(id[:16]) + "-" + hex.EncodeToString(id[16:]) + "-01"
}

// twinDocument returns the stored document of benchmark twin i, as the server would store it
// after a PUT of twinBody(i).
func twinDocument(i int, etag, now string) ([]byte, error) {
	doc, err := twin.NewDocument(twinID(i), etag, twinBody(i), func(string) bool { return false }, now)
	if err != nil {
		return nil, fmt.Errorf("build twin document %d: %w", i, err)
	}
	b, err := twin.Encode(doc)
	if err != nil {
		return nil, fmt.Errorf("encode twin document %d: %w", i, err)
	}
	return b, nil
}
