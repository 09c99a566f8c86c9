package twins

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// TestReloadModels has a second Service over the same store stand for another node: the
// first follows its model changes with ReloadModels, keeps its own, and parses nothing when
// nothing but decommissioning changed.
func TestReloadModels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{})
	a := e.g
	other, err := New(Config{ServiceID: serviceID, Now: func() time.Time { return clock.Add(time.Hour) }}, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	has := func(id string) bool {
		_, ok := a.Models().Interface(id)
		return ok
	}
	reload := func() {
		t.Helper()
		if err := a.ReloadModels(ctx); err != nil {
			t.Fatalf("ReloadModels: %v", err)
		}
	}

	// A reload with nothing changed keeps the very set.
	before := a.Models()
	reload()
	if a.Models() != before {
		t.Error("a reload of unchanged models replaced the set")
	}

	if _, err := other.AddModels(ctx, []byte(`[`+iface("dtmi:ex:A;1", "")+`,`+iface("dtmi:ex:B;1", `,"extends":"dtmi:ex:A;1"`)+`]`)); err != nil {
		t.Fatal(err)
	}
	if has("dtmi:ex:A;1") {
		t.Fatal("the other service's model is there before the reload")
	}
	reload()
	if !has("dtmi:ex:A;1") || !has("dtmi:ex:B;1") || !a.Models().IsA("dtmi:ex:B;1", "dtmi:ex:A;1") {
		t.Fatalf("after the reload, models are %v", a.Models().IDs())
	}
	if _, err := a.PutTwin(ctx, "t1", []byte(`{"$metadata":{"$model":"dtmi:ex:B;1"}}`), "", Trace{}); err != nil {
		t.Fatalf("create a twin of the other service's model: %v", err)
	}

	// Its own model survives the reload, which parses nothing.
	if _, err := a.AddModels(ctx, []byte(`[`+iface("dtmi:ex:C;1", "")+`]`)); err != nil {
		t.Fatal(err)
	}
	before = a.Models()
	reload()
	if a.Models() != before || !has("dtmi:ex:C;1") {
		t.Errorf("a reload after the service's own change: same set %v, C there %v", a.Models() == before, has("dtmi:ex:C;1"))
	}

	// Decommissioning follows without a parse.
	if err := other.PatchModel(ctx, "dtmi:ex:B;1", []byte(`[{"op":"replace","path":"/decommissioned","value":true}]`)); err != nil {
		t.Fatal(err)
	}
	reload()
	if a.Models() != before || !a.models.Load().decommissioned["dtmi:ex:B;1"] {
		t.Errorf("after decommissioning: same set %v, decommissioned %v", a.Models() == before, a.models.Load().decommissioned)
	}

	// Deletes leave the set; a model stored again with another definition replaces it.
	if err := other.ReloadModels(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteModel(ctx, "dtmi:ex:B;1"); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteModel(ctx, "dtmi:ex:C;1"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AddModels(ctx, []byte(`[`+iface("dtmi:ex:C;1", `,"contents":[{"@type":"Property","name":"p","schema":"string"}]`)+`]`)); err != nil {
		t.Fatal(err)
	}
	reload()
	c, ok := a.Models().Interface("dtmi:ex:C;1")
	if has("dtmi:ex:B;1") || !ok || c.Properties["p"] == nil || a.models.Load().decommissioned["dtmi:ex:B;1"] {
		t.Fatalf("after deletes and a replacement: models %v, C %+v", a.Models().IDs(), c)
	}

	// A model others extend, replaced behind the service's back, makes it resolve every model
	// again.
	if _, err := other.AddModels(ctx, []byte(`[`+iface("dtmi:ex:D;1", `,"extends":"dtmi:ex:A;1"`)+`]`)); err != nil {
		t.Fatal(err)
	}
	reload()
	err = e.st.Update(ctx, func(w store.Writer) error {
		return w.PutModel(store.Model{ID: "dtmi:ex:A;1", UploadTime: clock.Add(2 * time.Hour),
			Definition: json.RawMessage(iface("dtmi:ex:A;1", `,"contents":[{"@type":"Property","name":"q","schema":"string"}]`))})
	})
	if err != nil {
		t.Fatal(err)
	}
	reload()
	d, ok := a.Models().Interface("dtmi:ex:D;1")
	if !ok || d.Properties["q"] == nil {
		t.Fatalf("after replacing a base model: D %+v", d)
	}

	// A stored model that does not resolve fails the reload and keeps the models.
	err = e.st.Update(ctx, func(w store.Writer) error {
		return w.PutModel(store.Model{ID: "dtmi:ex:E;1", UploadTime: clock,
			Definition: json.RawMessage(iface("dtmi:ex:E;1", `,"extends":"dtmi:ex:Missing;1"`))})
	})
	if err != nil {
		t.Fatal(err)
	}
	before = a.Models()
	if err := a.ReloadModels(ctx); err == nil || a.Models() != before {
		t.Errorf("ReloadModels of a model that does not resolve: %v, same set %v", err, a.Models() == before)
	}
}

// BenchmarkReloadModels measures a reload over 2,000 stored models: after the service's own
// change (nothing to parse) and after another node added one model, against loading them
// all as New does (which a reload that resolved everything again would cost).
func BenchmarkReloadModels(b *testing.B) {
	const n = 2000
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(w store.Writer) error {
		for i := range n {
			id := fmt.Sprintf("dtmi:ex:M%d;1", i)
			def := iface(id, `,"contents":[{"@type":"Property","name":"p","schema":"double"},{"@type":"Property","name":"q","schema":"string"}]`)
			if err := w.PutModel(store.Model{ID: id, Definition: json.RawMessage(def), UploadTime: clock}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{ServiceID: serviceID}, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if err := s.ReloadModels(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-added", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			id := fmt.Sprintf("dtmi:ex:N%d;1", i)
			err := st.Update(ctx, func(w store.Writer) error {
				return w.PutModel(store.Model{ID: id, Definition: json.RawMessage(iface(id, "")), UploadTime: clock})
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := s.ReloadModels(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			if _, err := New(Config{ServiceID: serviceID}, st, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
