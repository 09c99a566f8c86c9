package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestChangeLogContract(t *testing.T) {
	storetest.RunChangeLog(t, func(t *testing.T) store.Store { return open(t, Config{Dir: t.TempDir()}) })
}

// TestLogFromDiskAndTailAgree checks that the records the tail hands out are the records the
// database holds: the same log read before and after a restart, which empties the tail.
func TestLogFromDiskAndTailAgree(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	for i := range 50 {
		err := s.Update(context.Background(), func(w store.Writer) error {
			id := fmt.Sprint("twin-", i%7)
			e := event.Event{
				ID: fmt.Sprint("e", i), Source: "twinflow.test", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
				Subject: id, Time: "2026-01-02T03:04:05.0000000Z", DataContentType: "application/json",
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				Data:        json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/v","value":"\u00e9\n%d"}]`, i)),
			}
			if i%5 == 0 {
				e.Type, e.Subject, e.DataSchema = event.Telemetry, "", "dtmi:example:Room;1"
			}
			return errors.Join(w.PutTwin(store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"1"`, Doc: json.RawMessage(`{}`)}), w.Emit(e))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := s.Log().(store.ChangeLog)
	fromTail, err := cl.ReadChanges(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Config{Dir: dir})
	defer s.Close()
	fromDisk, err := s.Log().(store.ChangeLog).ReadChanges(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromTail) != 50 || len(fromDisk) != 50 {
		t.Fatalf("read %d records from the tail and %d from disk, want 50", len(fromTail), len(fromDisk))
	}
	for i := range fromDisk {
		if !reflect.DeepEqual(fromTail[i].Record, fromDisk[i].Record) {
			t.Errorf("record %d from the tail %+v, from disk %+v", i+1, fromTail[i].Record, fromDisk[i].Record)
		}
		if wantKnown := i%5 != 0; fromTail[i].Known != wantKnown || fromDisk[i].Known {
			t.Errorf("record %d: known %v from the tail, %v from disk", i+1, fromTail[i].Known, fromDisk[i].Known)
		}
	}
}
