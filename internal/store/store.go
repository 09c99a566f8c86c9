// Package store defines the storage seam: models, twins, relationships and the change log,
// changed together in transactions. Implementations live in subpackages (store/sqlite, later
// store/postgres) and all pass the contract suite in store/storetest.
//
// # Where twin state lives
//
// The store's committed rows and its change log are the truth. A twin write also reaches
// four copies of twin state, each documented where it is defined with its owner and the
// rule that keeps it correct; the first two serve writes, the last two serve readers:
//
//   - The twin service's cache (twinCache, internal/twins/cache.go): twins the service wrote
//     recently, a hint that may be stale; every write prepared from it checks the twin's ETag
//     again inside Update.
//   - The SQLite writer's cache (twinCache, internal/store/sqlite/cache.go): twins as the
//     writer's open transaction sees them, used only on the writer goroutine, so that the
//     read that starts most Updates (the ETag check above among them) skips SQLite; every put
//     and delete updates it and every rollback drops what it undid.
//   - The change log's in-memory tail (package logtail, each store's Store.tail): the
//     newest durable records with the state each change left, which Log.Read and
//     ChangeLog.ReadChanges hand out up to Log.Last and never beyond; older records come from
//     the database.
//   - The graph index (package graph): every twin and relationship, for queries, built from a
//     store snapshot at every start and brought up to Log.Last from the change log before
//     each query; no write reads it or waits for it.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"syscall"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
)

// ErrNotFound is returned (possibly wrapped) by Reader methods when the entity does not exist.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned (possibly wrapped) by a Store, and by its Log, once Close was called.
var ErrClosed = errors.New("store closed")

// ErrExists is returned (possibly wrapped) by the Writer's Create methods when the entity
// exists already.
var ErrExists = errors.New("already exists")

// ErrFull is returned (possibly wrapped) by an Update that was not written because the disk
// holding the store is full; nothing of it was committed, and it may succeed once space is
// freed. It is syscall.ENOSPC, so that one test also recognises a file write that ran out of
// space. While the disk is full a store may refuse every Update that would grow it and run
// only those that delete (see the implementation's documentation).
var ErrFull error = syscall.ENOSPC

// ErrFailed is returned (possibly wrapped) by every Update of a store that failed for good: it
// can no longer tell which of its commits reached the disk (an fsync failed), so it accepts
// no more writes. Reopening the store reads back what the disk holds.
var ErrFailed = errors.New("store failed")

// ErrConflict is returned (possibly wrapped) by an Update whose conditional write (see
// TwinReplacer) found the entity changed by another write, or gone; nothing of the Update
// was committed, and it may succeed when prepared again from the current state.
var ErrConflict = errors.New("changed by another write")

// ErrUnavailable is returned (possibly wrapped) by a store whose database server cannot be
// reached, or dropped the connection, or is shutting down: a later call may succeed once it
// is back. When an Update fails with it, its commit may or may not have taken effect.
var ErrUnavailable = errors.New("store unavailable")

// ErrDuplicate is returned (possibly wrapped) by IngressWriter.RecordMessage when the message
// is recorded already and its record has not expired.
var ErrDuplicate = errors.New("message already recorded")

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

// Stats are counters of a store's write path since it was opened, for benchmarks and
// diagnostics. They are read one by one, so while Updates run they may be a moment apart.
type Stats struct {
	// Transactions is the number of committed transactions, Updates the number of Updates
	// they carried.
	Transactions, Updates uint64
	// Syncs is the number of fsyncs the store made itself and SyncTime the time they took in
	// all; one fsync makes every transaction committed before it durable. Both are zero for a
	// store whose database server makes its commits durable (PostgreSQL).
	Syncs    uint64
	SyncTime time.Duration
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

// MultiReader reads many twins or relationships by their keys at once. A store whose reads
// each cost a round trip to its database (PostgreSQL) offers it on the Reader a View passes
// to its fn (check with a type assertion), for a reader that needs the states of many
// entities, such as the query index applying other nodes' changes.
type MultiReader interface {
	// TwinsOf returns the twins of ids that exist, in no particular order.
	TwinsOf(ids []string) ([]Twin, error)
	// RelationshipsOf returns the relationships (sourceIDs[i], ids[i]) that exist, in no
	// particular order; the two slices have the same length.
	RelationshipsOf(sourceIDs, ids []string) ([]Relationship, error)
}

// Scanner reads every twin and every relationship of a snapshot in one pass each, for
// building in-memory indexes: no paging, no query per twin. The Reader a View passes to its
// fn implements Scanner when the store supports it (check with a type assertion); a Writer
// need not. The iterators are valid only until the View's fn returns, and yield each entity
// exactly once, in no particular order. After an error they yield it (with a zero entity) and
// stop. Breaking out of a loop early is allowed and releases the scan.
type Scanner interface {
	ScanTwins() iter.Seq2[Twin, error]
	ScanRelationships() iter.Seq2[Relationship, error]
}

// Writer changes state inside an Update. Puts insert or replace; deletes of missing entities
// return ErrNotFound.
//
// The Create methods insert only, for bulk writes that expect new entities: each checks and
// writes in one step, where a Put preceded by a read takes two. When the entity exists they
// return ErrExists and change nothing, so the caller can fall back to reading it and Put.
type Writer interface {
	Reader
	PutModel(m Model) error
	DeleteModel(id string) error
	PutTwin(t Twin) error
	// CreateTwin inserts t, or returns ErrExists when a twin with its id exists.
	CreateTwin(t Twin) error
	DeleteTwin(id string) error
	PutRelationship(r Relationship) error
	// CreateRelationship inserts r when both its twins exist, the source with the model
	// sourceModel and the target with targetModel: the state r was validated against. It
	// returns ErrExists when a relationship with r's source and id exists, and ErrNotFound
	// when either twin is missing or has another model; either way it changes nothing.
	CreateRelationship(r Relationship, sourceModel, targetModel string) error
	DeleteRelationship(sourceID, id string) error
	// Emit appends e to the change log. It is the only way to create an event, so an event
	// commits exactly when the state change that caused it does.
	Emit(e event.Event) error
}

// TwinReplacer is a Writer that replaces a twin on the condition that its stored ETag is
// still the one the caller read, without reading it again: a store whose reads inside an
// Update each cost a round trip to its database (PostgreSQL) offers it, so that a write
// prepared from a snapshot costs none. Check for it with a type assertion.
type TwinReplacer interface {
	// ReplaceTwin replaces the twin t.ID with t if its stored ETag is etag. If it is not
	// (another write changed the twin, or deleted it), the Update fails with ErrConflict and
	// keeps nothing of fn, even if fn ignored ReplaceTwin's error: the store may check the
	// condition only after fn returned.
	ReplaceTwin(t Twin, etag string) error
}

// Log is the ordered, durable change log. Seqs are consecutive: the record after Seq n has
// Seq n+1, and records leave only from the front, by pruning (DeliveryWriter.PruneLog), so a
// reader that finds the record after its position missing knows it was pruned.
type Log interface {
	// Read returns up to max records with Seq > after, in Seq order. When there are none it
	// waits until one is committed or ctx ends (then it returns ctx's error).
	Read(ctx context.Context, after uint64, max int) ([]event.Record, error)
	// Last returns the Seq of the newest committed record, 0 when the log is empty.
	Last() uint64
}

// ChangeLog is a Log that also knows, for recent records, what their change left behind, so
// that a consumer keeping its own copy of the state (the query index) need not read it back.
// Records returned by Read and ReadChanges may share memory with other readers' copies:
// callers must not modify them.
type ChangeLog interface {
	Log
	// ReadChanges is Read, with each record's resulting state where the log knows it.
	ReadChanges(ctx context.Context, after uint64, max int) ([]Change, error)
}

// Change is a log record with the state of the entity it is about as the Update that emitted
// it left it: the twin of a Twin.* record (whose subject is the twin's id) or the
// relationship of a Relationship.* record (subject event.RelationshipSubject).
type Change struct {
	event.Record
	// Known reports whether Twin or Relationship tells the state. When it does, a nil
	// pointer means the change deleted the entity. Records of other types, records whose
	// event did not come with a change of its subject in the same Update, and records the
	// log no longer keeps in memory are not Known.
	Known        bool
	Twin         *Twin
	Relationship *Relationship
}

// Endpoint is a stored endpoint. Config is its JSON definition as accepted
// ({"endpointType": ..., and that kind's settings}); the store keeps it opaque.
type Endpoint struct {
	Name    string
	Config  json.RawMessage
	Created time.Time
}

// Route is a stored event route: events that pass Filter go to the endpoint EndpointName.
type Route struct {
	ID           string
	EndpointName string
	Filter       string
}

// DeadLetter is an event an endpoint's relay gave up on, kept with the reason.
type DeadLetter struct {
	Endpoint string
	// ID numbers the store's dead letters from 1 in the order they were added; ids are never
	// reused, so a list can be paged by id.
	ID uint64
	// Seq is the event's position in the change log.
	Seq      uint64
	Event    event.Event
	Reason   string
	Attempts int
	Time     time.Time
}

// Delivery is the part of a store that keeps event delivery state beside the change log:
// endpoints, routes, each endpoint's delivery cursor and dead letters. Its transactions have
// the semantics of Store's View and Update (they share the writer and its group commit).
type Delivery interface {
	ViewDelivery(ctx context.Context, fn func(DeliveryReader) error) error
	UpdateDelivery(ctx context.Context, fn func(DeliveryWriter) error) error
}

// DeliveryReader reads delivery state. Methods return ErrNotFound for a missing entity; a limit
// of 0 or less means no limit.
type DeliveryReader interface {
	Endpoint(name string) (Endpoint, error)
	// Endpoints lists every endpoint ordered by name.
	Endpoints() ([]Endpoint, error)
	Route(id string) (Route, error)
	// Routes lists routes ordered by id, starting after the given id.
	Routes(after string, limit int) ([]Route, error)
	CountRoutes() (int, error)
	// Cursor returns the Seq of the newest record the endpoint's relay is done with.
	Cursor(endpoint string) (uint64, error)
	// ConsumerCursor returns the Seq of the newest record the log consumer name (one that is
	// not an endpoint, such as propagation) is done with; ErrNotFound when it has none yet.
	ConsumerCursor(name string) (uint64, error)
	// ConsumerCursors returns every log consumer's cursor, by name.
	ConsumerCursors() (map[string]uint64, error)
	DeadLetter(endpoint string, id uint64) (DeadLetter, error)
	// DeadLetters lists an endpoint's dead letters ordered by id, starting after the given id.
	DeadLetters(endpoint string, after uint64, limit int) ([]DeadLetter, error)
	CountDeadLetters(endpoint string) (int, error)
	// LogTime returns when the record seq was committed, to the millisecond. It returns
	// ErrNotFound when the log holds no record at or before seq.
	LogTime(seq uint64) (time.Time, error)
	// LogSeqAt returns the Seq of the first record committed at or after t (to the
	// millisecond), or the next Seq to be assigned when there is none.
	LogSeqAt(t time.Time) (uint64, error)
}

// DeliveryWriter changes delivery state inside an UpdateDelivery.
type DeliveryWriter interface {
	DeliveryReader
	// PutEndpoint inserts or replaces an endpoint. A new endpoint's cursor starts at the
	// newest record in the log, so its relay delivers only events committed after it; a
	// replaced endpoint keeps its cursor, its dead letters and its Created time.
	PutEndpoint(e Endpoint) error
	// DeleteEndpoint deletes an endpoint with its cursor and dead letters. Routes to it are
	// left alone; callers decide whether they may dangle.
	DeleteEndpoint(name string) error
	PutRoute(r Route) error
	DeleteRoute(id string) error
	// SetCursor moves an endpoint's cursor, forwards after delivery or backwards for a replay.
	SetCursor(endpoint string, seq uint64) error
	// SetConsumerCursor creates or moves the cursor of the log consumer name.
	SetConsumerCursor(name string, seq uint64) error
	// DeleteConsumerCursor deletes the cursor of the log consumer name, so that it no longer
	// holds back PruneLog's callers; a missing one is ErrNotFound.
	DeleteConsumerCursor(name string) error
	// AddDeadLetter stores d (its ID is ignored) and returns the id it was given.
	AddDeadLetter(d DeadLetter) (uint64, error)
	DeleteDeadLetter(endpoint string, id uint64) error
	// PruneLog deletes up to max of the oldest log records that have Seq <= through and were
	// committed before before, and returns how many it deleted. It never deletes the newest
	// record, so Seqs keep growing across restarts.
	PruneLog(through uint64, before time.Time, max int) (int, error)
}

// Job is a stored bulk job: an import or a delete of the whole graph. Kind tells them apart,
// and ids are unique per kind. The store keeps Doc, the job's state, opaque: package job owns
// its shape.
type Job struct {
	Kind string
	ID   string
	Doc  json.RawMessage
}

// Jobs is the part of a store that keeps bulk jobs. A job's progress commits in the same
// transaction as the changes it describes, so UpdateJobs hands fn a JobWriter that writes
// twins, relationships, models and events as well as jobs. Its transactions have the
// semantics of Store's View and Update (they share the writer and its group commit).
type Jobs interface {
	ViewJobs(ctx context.Context, fn func(JobReader) error) error
	UpdateJobs(ctx context.Context, fn func(JobWriter) error) error
}

// JobReader reads jobs. Job returns ErrNotFound for a missing job.
type JobReader interface {
	Job(kind, id string) (Job, error)
	// Jobs lists the jobs of kind ordered by id, starting after the given id; a limit of 0
	// or less means no limit.
	Jobs(kind, after string, limit int) ([]Job, error)
}

// JobWriter changes jobs, and everything a Writer changes, in one transaction.
type JobWriter interface {
	Writer
	JobReader
	// PutJob inserts or replaces a job.
	PutJob(j Job) error
	// DeleteJob deletes a job; a missing one is ErrNotFound.
	DeleteJob(kind, id string) error
}

// Source is a stored ingress source. Config is its JSON definition as accepted
// ({"sourceType": ..., and that kind's settings}); the store keeps it opaque.
type Source struct {
	Name    string
	Config  json.RawMessage
	Created time.Time
}

// Mapping is a stored mapping: rules that turn the messages of the source Source into twin
// changes. Definition is its JSON definition as accepted; the store keeps it opaque.
type Mapping struct {
	Name       string
	Source     string
	Definition json.RawMessage
	Created    time.Time
}

// SourceDeadLetter is a message a source's runner gave up on, kept with the reason.
type SourceDeadLetter struct {
	Source string
	// ID numbers the store's source dead letters from 1 in the order they were added; ids
	// are never reused, so a list can be paged by id.
	ID       uint64
	Message  ingress.Message
	Reason   string
	Attempts int
	Time     time.Time
}

// MessageRecord records that message ID of Source was applied, so that the same message
// delivered again is recognised until Expires.
type MessageRecord struct {
	Source, ID string
	// Time is when the message is recorded: a record of the same message that expires after
	// it makes the message a duplicate.
	Time    time.Time
	Expires time.Time
}

// Ingress is the part of a store that keeps ingress state: source and mapping definitions,
// the sources' dead letters and the ids of applied messages. Its transactions have the
// semantics of Store's View and Update (they share the writer and its group commit), and an
// UpdateIngress also changes twins and emits events, so that a message's changes, its
// de-duplication record and its dead letter commit together or not at all.
type Ingress interface {
	ViewIngress(ctx context.Context, fn func(IngressReader) error) error
	UpdateIngress(ctx context.Context, fn func(IngressWriter) error) error
}

// IngressReader reads ingress state. Methods return ErrNotFound for a missing entity; a limit
// of 0 or less means no limit.
type IngressReader interface {
	Source(name string) (Source, error)
	// Sources lists every source ordered by name.
	Sources() ([]Source, error)
	Mapping(name string) (Mapping, error)
	// Mappings lists every mapping ordered by name.
	Mappings() ([]Mapping, error)
	SourceDeadLetter(source string, id uint64) (SourceDeadLetter, error)
	// SourceDeadLetters lists a source's dead letters ordered by id, starting after the
	// given id.
	SourceDeadLetters(source string, after uint64, limit int) ([]SourceDeadLetter, error)
	CountSourceDeadLetters(source string) (int, error)
	// MessageRecorded reports whether message id of source is recorded with a record that
	// expires after at.
	MessageRecorded(source, id string, at time.Time) (bool, error)
}

// IngressWriter changes ingress state, and twins, inside an UpdateIngress.
type IngressWriter interface {
	Writer
	IngressReader
	// PutSource inserts or replaces a source; a replaced source keeps its Created time, its
	// dead letters and its message records.
	PutSource(s Source) error
	// DeleteSource deletes a source with its dead letters and message records. Mappings of
	// it are left alone; callers decide whether they may dangle.
	DeleteSource(name string) error
	// PutMapping inserts or replaces a mapping; a replaced mapping keeps its Created time.
	PutMapping(m Mapping) error
	DeleteMapping(name string) error
	// RecordMessage records r. It fails with ErrDuplicate, changing nothing, when the same
	// message is recorded with a record that expires after r.Time; an expired record is
	// replaced.
	RecordMessage(r MessageRecord) error
	// AddSourceDeadLetter stores d (its ID is ignored) and returns the id it was given.
	AddSourceDeadLetter(d SourceDeadLetter) (uint64, error)
	DeleteSourceDeadLetter(source string, id uint64) error
	// PruneMessages deletes up to max message records that expired at or before before, and
	// returns how many it deleted.
	PruneMessages(before time.Time, max int) (int, error)
}

// Key is a stored API key. The store keeps only the SHA-256 hash of the key's secret, never
// the secret itself.
type Key struct {
	// ID identifies the key: the public part of the key's text, unique.
	ID string
	// Name describes the key to people; it need not be unique.
	Name string
	// Role is the role the key grants, named as package auth names it; the store keeps it
	// opaque.
	Role string
	// Hash is the SHA-256 hash of the key's secret.
	Hash    []byte
	Created time.Time
	// Expires is when the key stops being accepted; the zero time means never.
	Expires time.Time
}

// Keys is the part of a store that keeps API keys. Its transactions have the semantics of
// Store's View and Update (they share the writer and its group commit).
type Keys interface {
	ViewKeys(ctx context.Context, fn func(KeyReader) error) error
	UpdateKeys(ctx context.Context, fn func(KeyWriter) error) error
}

// KeyReader reads API keys. Key returns ErrNotFound for a missing key.
type KeyReader interface {
	Key(id string) (Key, error)
	// Keys lists every key ordered by id.
	Keys() ([]Key, error)
}

// KeyWriter changes API keys inside an UpdateKeys.
type KeyWriter interface {
	KeyReader
	// CreateKey inserts k; it returns ErrExists, changing nothing, when a key with its id
	// exists.
	CreateKey(k Key) error
	// DeleteKey deletes the key id; a missing one is ErrNotFound.
	DeleteKey(id string) error
}

// Detector is a stored anomaly detector. Config is its JSON definition as accepted
// ({"twins": ..., "properties": [...], ...}); the store keeps it opaque.
type Detector struct {
	Name    string
	Config  json.RawMessage
	Created time.Time
}

// DetectorState is the learned state of one series a detector scores: the property Property
// of the twin Twin. The store keeps State, package anomaly's encoding, opaque.
type DetectorState struct {
	Detector, Twin, Property string
	State                    []byte
}

// Detectors is the part of a store that keeps anomaly detectors and the learned state of
// their series. A detector's scoring commits the events it raises with a consumer cursor, and
// its states with another, each in one transaction, so UpdateDetectors hands fn a
// DetectorWriter that emits events and moves consumer cursors as well. Its transactions have the semantics of
// Store's View and Update (they share the writer and its group commit).
type Detectors interface {
	ViewDetectors(ctx context.Context, fn func(DetectorReader) error) error
	UpdateDetectors(ctx context.Context, fn func(DetectorWriter) error) error
}

// DetectorReader reads detectors. Detector returns ErrNotFound for a missing detector; a
// limit of 0 or less means no limit.
type DetectorReader interface {
	Detector(name string) (Detector, error)
	// Detectors lists detectors ordered by name, starting after the given name.
	Detectors(after string, limit int) ([]Detector, error)
	// DetectorStates lists the states of the detector's series ordered by twin and
	// property.
	DetectorStates(detector string) ([]DetectorState, error)
	// ConsumerCursor is DeliveryReader.ConsumerCursor.
	ConsumerCursor(name string) (uint64, error)
}

// DetectorWriter changes detectors, their states and consumer cursors, and everything a
// Writer changes, in one transaction.
type DetectorWriter interface {
	Writer
	DetectorReader
	// PutDetector inserts or replaces a detector; a replaced detector keeps its Created time
	// and its states.
	PutDetector(d Detector) error
	// DeleteDetector deletes a detector with its states; a missing one is ErrNotFound.
	DeleteDetector(name string) error
	// PutDetectorState inserts or replaces the state of one series.
	PutDetectorState(s DetectorState) error
	// DeleteDetectorStates deletes every state of the detector.
	DeleteDetectorStates(detector string) error
	// DeleteDetectorTwin deletes the states of the detector's series of twin.
	DeleteDetectorTwin(detector, twin string) error
	// SetConsumerCursor is DeliveryWriter.SetConsumerCursor.
	SetConsumerCursor(name string, seq uint64) error
	// DeleteConsumerCursor is DeliveryWriter.DeleteConsumerCursor.
	DeleteConsumerCursor(name string) error
}
