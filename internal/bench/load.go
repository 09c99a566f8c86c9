package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// graphLoad is what loadGraph stores.
type graphLoad struct {
	// Twins is the number of twins of the benchmark model, twinID(0) to twinID(Twins-1).
	Twins int
	// Relationships is the number of relationships "next", relationship i (id nextID(i))
	// from twin i to twin i+1, both modulo Twins.
	Relationships int
	// Batch is the number of twins, or of relationships, per store transaction.
	Batch int
	// Events writes the create event of each twin and relationship to the change log, as
	// creating them through the API does. Without them the server starts with nothing to
	// deliver or record.
	Events bool
}

// nextID is the id of relationship i of a graphLoad.
func nextID(i int) string { return fmt.Sprintf("next-%07d", i) }

// loadGraph stores the benchmark model and then g's twins and relationships through the
// SQLite store in dir, in transactions of g.Batch.
func loadGraph(ctx context.Context, dir string, g graphLoad, logger *slog.Logger) (err error) {
	// The load need not survive a machine crash, only reach the disk by Close: commits skip
	// the fsync (NoSync); closing the store checkpoints everything into the database file.
	st, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, logger)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()
	definition, err := modelDefinition()
	if err != nil {
		return fmt.Errorf("encode model: %w", err)
	}
	err = st.Update(ctx, func(w store.Writer) error {
		return w.PutModel(store.Model{ID: modelID, Definition: definition, UploadTime: time.Now().UTC()})
	})
	if err != nil {
		return fmt.Errorf("store model: %w", err)
	}
	// emit writes the create event of an entity, if g asks for them.
	emit := func(w store.Writer, typ, subject, now string, doc []byte) error {
		if !g.Events {
			return nil
		}
		return w.Emit(event.Event{
			ID: uuid.NewString(), Source: "localhost", SpecVersion: event.SpecVersion,
			Type: typ, Subject: subject, Time: now, DataContentType: "application/json", Data: doc,
		})
	}

	for from := 0; from < g.Twins; from += g.Batch {
		to := min(from+g.Batch, g.Twins)
		now := twin.FormatTime(time.Now())
		twins := make([]store.Twin, 0, to-from)
		for i := from; i < to; i++ {
			etag := twin.NewETag()
			doc, err := twinDocument(i, etag, now)
			if err != nil {
				return err
			}
			twins = append(twins, store.Twin{ID: twinID(i), ModelID: modelID, ETag: etag, Doc: doc})
		}
		err := st.Update(ctx, func(w store.Writer) error {
			for _, t := range twins {
				if err := w.PutTwin(t); err != nil {
					return err
				}
				if err := emit(w, event.TwinCreate, t.ID, now, t.Doc); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store twins %d to %d: %w", from, to-1, err)
		}
	}

	for from := 0; from < g.Relationships; from += g.Batch {
		to := min(from+g.Batch, g.Relationships)
		now := twin.FormatTime(time.Now())
		rels := make([]store.Relationship, 0, to-from)
		for i := from; i < to; i++ {
			r := store.Relationship{
				SourceID: twinID(i % g.Twins), ID: nextID(i), Name: "next",
				TargetID: twinID((i + 1) % g.Twins), ETag: twin.NewETag(),
			}
			if r.Doc, err = twin.EncodeRelationship(r.SourceID, r.ID, r.Name, r.TargetID, r.ETag, nil); err != nil {
				return fmt.Errorf("encode relationship %d: %w", i, err)
			}
			rels = append(rels, r)
		}
		err := st.Update(ctx, func(w store.Writer) error {
			for _, r := range rels {
				if err := w.PutRelationship(r); err != nil {
					return err
				}
				if err := emit(w, event.RelationshipCreate, event.RelationshipSubject(r.SourceID, r.ID), now, r.Doc); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store relationships %d to %d: %w", from, to-1, err)
		}
	}
	return nil
}
