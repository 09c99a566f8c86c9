// Package store defines the storage seam: models, twins, relationships and the change log,
// changed together in transactions. Implementations live in subpackages (store/sqlite, later
// store/postgres) and all pass the contract suite in store/storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/twinflow/twinflow/internal/event"
)

// ErrNotFound is returned (possibly wrapped) by Reader methods when the entity does not exist.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned (possibly wrapped) by a Store, and by its Log, once Close was called.
var ErrClosed = errors.New("store closed")

// Store keeps twinflow's state and its change log.
//
// Update runs fn in a write transaction: every change fn makes through the Writer, and every
// event it emits, commits together or not at all. Update returns only after the commit is
// durable (fsync'd), or with fn's error after its changes were rolled back. Implementations may
// batch concurrent Updates into one physical transaction (group commit); each fn is still
// isolated, so one failing fn does not fail its neighbours. Updates are serialised: fn sees the
// effects of every Update that returned before it began. fn must not block and must not call
// back into the Store.
//
// View runs fn against a consistent snapshot of committed state.
type Store interface {
	View(ctx context.Context, fn func(Reader) error) error
	Update(ctx context.Context, fn func(Writer) error) error
	// Log is the change log every emitted event lands in.
	Log() Log
	// Close waits for pending writes and releases the store. Calls after Close fail.
	Close() error
}

// Model is a stored DTDL Interface.
type Model struct {
	ID             string
	Definition     json.RawMessage // the Interface's DTDL JSON as uploaded
	UploadTime     time.Time
	Decommissioned bool
}

// Twin is a stored digital twin. Doc is the twin's full JSON document as GET returns it
// ($dtId, $etag, properties, components and $metadata), at the newest api-version.
type Twin struct {
	ID      string
	ModelID string
	ETag    string
	Doc     json.RawMessage
}

// Relationship is a stored relationship. Doc is its full JSON document as GET returns it.
type Relationship struct {
	SourceID string
	ID       string
	Name     string
	TargetID string
	ETag     string
	Doc      json.RawMessage
}

// Reader reads committed state. Methods return ErrNotFound for a missing entity. Lists are
// ordered by id (relationships by source id, then id) and start after the given key, so a
// caller can page through them; a limit of 0 or less means no limit.
type Reader interface {
	Model(id string) (Model, error)
	Models(after string, limit int) ([]Model, error)
	Twin(id string) (Twin, error)
	Twins(after string, limit int) ([]Twin, error)
	Relationship(sourceID, id string) (Relationship, error)
	// Relationships lists the relationships from sourceID; a non-empty name keeps only those
	// with that name.
	Relationships(sourceID, name string, after string, limit int) ([]Relationship, error)
	// IncomingRelationships lists the relationships whose target is targetID, ordered by
	// source id and id; after is "<sourceID>\x00<id>" of the last one seen, or empty.
	IncomingRelationships(targetID string, after string, limit int) ([]Relationship, error)
	// HasRelationships reports whether twinID is the source or target of any relationship.
	HasRelationships(twinID string) (bool, error)
	// CountTwins returns the number of twins.
	CountTwins() (int, error)
}

// Writer changes state inside an Update. Puts insert or replace; deletes of missing entities
// return ErrNotFound.
type Writer interface {
	Reader
	PutModel(m Model) error
	DeleteModel(id string) error
	PutTwin(t Twin) error
	DeleteTwin(id string) error
	PutRelationship(r Relationship) error
	DeleteRelationship(sourceID, id string) error
	// Emit appends e to the change log. It is the only way to create an event, so an event
	// commits exactly when the state change that caused it does.
	Emit(e event.Event) error
}

// Log is the ordered, durable change log.
type Log interface {
	// Read returns up to max records with Seq > after, in Seq order. When there are none it
	// waits until one is committed or ctx ends (then it returns ctx's error).
	Read(ctx context.Context, after uint64, max int) ([]event.Record, error)
	// Last returns the Seq of the newest committed record, 0 when the log is empty.
	Last() uint64
}
