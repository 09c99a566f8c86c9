// Package history keeps data history: every twin property change and every twin and
// relationship lifecycle event, in three tables shaped like the Azure Data Explorer tables ADT
// writes (AdtPropertyEvents, AdtTwinLifeCycleEvents, AdtRelationshipLifeCycleEvents).
//
// The Writer is a change-log consumer: it reads the log from its own durable cursor, turns
// each record into rows (Derive, a pure function) and hands them to a Store, which commits
// the rows together with the cursor in one transaction. A crash and a replay therefore never
// lose or duplicate a row. Each row carries the Seq of the log record it came from.
//
// Stores live in subpackages (history/sqlite, history/postgres) and all pass the
// contract suite in history/historytest.
package history

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/jsontext"
)

// The table names ADT uses by default; Config lets a deployment choose others.
const (
	DefaultPropertyTable              = "AdtPropertyEvents"
	DefaultTwinLifecycleTable         = "AdtTwinLifeCycleEvents"
	DefaultRelationshipLifecycleTable = "AdtRelationshipLifeCycleEvents"
	// DefaultTelemetryTable holds telemetry, when it is recorded: ADT records none, so the
	// name is twinflow's, in the style of ADT's.
	DefaultTelemetryTable = "AdtTelemetryEvents"
	// DefaultAnomalyTable holds the anomalies detectors raise: twinflow's own table.
	DefaultAnomalyTable = "TwinflowAnomalyEvents"
)

// The Action values of property rows, as ADT writes them (lower case).
const (
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// The Action values of lifecycle rows, as ADT writes them (capitalised).
const (
	LifecycleCreate = "Create"
	LifecycleDelete = "Delete"
)

// PropertyEvent is one row of the property table (AdtPropertyEvents): the new value of one
// top-level property of a twin or of a relationship after one change. A change of a
// sub-property (/a/b) records the whole new value of a; a component records its properties
// as one JSON object (without $metadata).
type PropertyEvent struct {
	// Seq is the change log record the row came from.
	Seq uint64
	// TimeStamp is when the change was processed: the time of its event.
	TimeStamp time.Time
	// SourceTimeStamp is the property's $metadata sourceTime after the change; the zero time
	// when it is unknown.
	SourceTimeStamp time.Time
	// ServiceID is the instance's host name, as the event's source carries it.
	ServiceID string
	// ID is the twin's id; for a relationship property, the relationship's source twin.
	ID string
	// ModelID is the twin's model after the change. Rows recorded when a relationship is
	// created leave it empty: its event does not carry one.
	ModelID string
	// Key is the property's name.
	Key string
	// Value is the property's JSON value after the change; JSON null for a delete.
	Value json.RawMessage
	// RelationshipID and RelationshipTarget are empty for twin properties.
	RelationshipID     string
	RelationshipTarget string
	// Action is ActionUpdate, or ActionDelete when the change removed the property.
	Action string
}

// TwinLifecycleEvent is one row of the twin lifecycle table (AdtTwinLifeCycleEvents).
type TwinLifecycleEvent struct {
	Seq       uint64
	TwinID    string
	Action    string // LifecycleCreate or LifecycleDelete
	TimeStamp time.Time
	ServiceID string
	ModelID   string
}

// RelationshipLifecycleEvent is one row of the relationship lifecycle table
// (AdtRelationshipLifeCycleEvents).
type RelationshipLifecycleEvent struct {
	Seq            uint64
	RelationshipID string
	Name           string
	Action         string // LifecycleCreate or LifecycleDelete
	TimeStamp      time.Time
	ServiceID      string
	Source         string
	Target         string
}

// TelemetryEvent is one row of the telemetry table (AdtTelemetryEvents): one telemetry
// message a twin or one of its components sent.
type TelemetryEvent struct {
	Seq uint64
	// TimeStamp is when the message was processed: telemetry events carry no time, so it is
	// when history recorded it.
	TimeStamp time.Time
	// SourceTimeStamp is the message's Telemetry-Source-Time; the zero time when it had none.
	SourceTimeStamp time.Time
	ServiceID       string
	// ID is the twin's id; Component the component that sent it, empty for the twin itself.
	ID        string
	Component string
	// ModelID is the model of the twin, or of the component.
	ModelID string
	// MessageID is the message's Message-Id.
	MessageID string
	// Value is the message's JSON payload.
	Value json.RawMessage
}

// AnomalyEvent is one row of the anomaly table (TwinflowAnomalyEvents): a point an anomaly
// detector raised (event.Anomaly).
type AnomalyEvent struct {
	Seq uint64
	// TimeStamp is the point's time: its sourceTime, or when its change committed.
	TimeStamp time.Time
	ServiceID string
	// ID is the twin's id, Key the property, Value the point's value.
	ID    string
	Key   string
	Value float64
	// Score and Kind are the detector's verdict (package anomaly); Detector names it.
	Score    float64
	Kind     string
	Detector string
}

// Rows holds rows of the tables, each slice in log order.
type Rows struct {
	Properties    []PropertyEvent
	Twins         []TwinLifecycleEvent
	Relationships []RelationshipLifecycleEvent
	Telemetry     []TelemetryEvent
	Anomalies     []AnomalyEvent
}

// Len returns the number of rows.
func (r *Rows) Len() int {
	return len(r.Properties) + len(r.Twins) + len(r.Relationships) + len(r.Telemetry) + len(r.Anomalies)
}

// Reset empties r, keeping its memory.
func (r *Rows) Reset() {
	r.Properties, r.Twins, r.Relationships = r.Properties[:0], r.Twins[:0], r.Relationships[:0]
	r.Telemetry, r.Anomalies = r.Telemetry[:0], r.Anomalies[:0]
}

// AnomalySelection chooses the rows Store.Anomalies returns: those of one twin, optionally of
// one detector, with From <= TimeStamp < To and Seq > After, the first Limit of them in Seq
// order.
type AnomalySelection struct {
	// ID is the twin's id. Required.
	ID string
	// Detector, when set, keeps only that detector's rows.
	Detector string
	// From and To bound TimeStamp, From inclusive and To exclusive; a zero time leaves that
	// side open.
	From, To time.Time
	// After continues a previous selection: the Seq of the last row taken.
	After uint64
	// Limit stops after that many rows; 0 or less means no limit.
	Limit int
}

// Selection chooses the property rows Store.Select yields: those of one twin, optionally of
// one property and of one relationship, with From <= TimeStamp < To, ordered by
// (TimeStamp, Seq, Key).
type Selection struct {
	// ID is the twin's id (the source twin for relationship properties). Required.
	ID string
	// Key, when set, keeps only that property's rows.
	Key string
	// RelationshipID, when set, selects that relationship's property rows; when empty the
	// twin's own rows, and with AllRelationships the rows of the twin and of every
	// relationship it is the source of.
	RelationshipID   string
	AllRelationships bool
	// From and To bound TimeStamp, From inclusive and To exclusive; a zero time leaves that
	// side open.
	From, To time.Time
	// After continues a previous selection: a token from Continuation of the last row taken.
	After string
	// Limit stops after that many rows; 0 or less means no limit.
	Limit int
}

// LifecycleSelection chooses the lifecycle rows Store.Lifecycle returns: the twin lifecycle
// rows of one twin and the relationship lifecycle rows of the relationships it is the source
// of, with From <= TimeStamp < To and Seq > After, the first Limit of them in Seq order.
type LifecycleSelection struct {
	// ID is the twin's id. Required.
	ID string
	// From and To bound TimeStamp, From inclusive and To exclusive; a zero time leaves that
	// side open.
	From, To time.Time
	// After continues a previous selection: the Seq of the last event taken.
	After uint64
	// Limit stops after that many events; 0 or less means no limit.
	Limit int
}

// LifecycleEvent is a row of the twin lifecycle table or of the relationship lifecycle
// table; exactly one of Twin and Relationship is set.
type LifecycleEvent struct {
	Twin         *TwinLifecycleEvent
	Relationship *RelationshipLifecycleEvent
}

// Seq returns the event's Seq.
func (e LifecycleEvent) Seq() uint64 {
	if e.Twin != nil {
		return e.Twin.Seq
	}
	return e.Relationship.Seq
}

// MergeLifecycle merges twin and relationship lifecycle rows, each in Seq order, into one
// list in Seq order of at most limit events (0 or less: all of them). A store reads up to
// limit rows of each table and merges them with it.
func MergeLifecycle(twins []TwinLifecycleEvent, rels []RelationshipLifecycleEvent, limit int) []LifecycleEvent {
	n := len(twins) + len(rels)
	if limit > 0 {
		n = min(n, limit)
	}
	out := make([]LifecycleEvent, 0, n)
	for len(out) < n {
		if len(rels) == 0 || len(twins) > 0 && twins[0].Seq < rels[0].Seq {
			out = append(out, LifecycleEvent{Twin: &twins[0]})
			twins = twins[1:]
		} else {
			out = append(out, LifecycleEvent{Relationship: &rels[0]})
			rels = rels[1:]
		}
	}
	return out
}

// Continuation returns the opaque token that makes a Selection continue after row r: pass
// it as Selection.After, with the other fields unchanged, to get the next page.
func Continuation(r PropertyEvent) string {
	s := strconv.FormatInt(r.TimeStamp.UnixNano(), 10) + ":" + strconv.FormatUint(r.Seq, 10) + ":" + r.Key
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// Position is where a continuation token points: the (TimeStamp, Seq, Key) of the last row
// taken. Stores use it to resume.
type Position struct {
	TimeStamp int64 // Unix nanoseconds
	Seq       uint64
	Key       string
}

// ErrBadContinuation is returned (wrapped) for a continuation token that Continuation did
// not make.
var ErrBadContinuation = errors.New("invalid continuation token")

// ParseContinuation decodes a token from Continuation.
func ParseContinuation(token string) (Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %v", ErrBadContinuation, err)
	}
	ts, rest, ok1 := strings.Cut(string(b), ":")
	seq, key, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return Position{}, ErrBadContinuation
	}
	var p Position
	if p.TimeStamp, err = strconv.ParseInt(ts, 10, 64); err != nil {
		return Position{}, ErrBadContinuation
	}
	if p.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return Position{}, ErrBadContinuation
	}
	p.Key = key
	return p, nil
}

// Aggregation asks Store.Aggregate for bucketed aggregates of the numeric values of one
// twin property over a set of twins.
type Aggregation struct {
	// IDs are the twins; Key is the property (twin properties only, not relationships').
	IDs []string
	Key string
	// From and To bound TimeStamp, From inclusive and To exclusive. Both are required.
	From, To time.Time
	// Interval is the bucket width. Buckets are aligned as Kusto's bin() aligns them: bucket
	// k covers [k*Interval, (k+1)*Interval) counted from the Unix epoch (UTC), clipped to
	// [From, To), so the first and last buckets may be partial.
	Interval time.Duration
	// NoEdges tells the store that First and Last are not wanted: they are then unspecified
	// (a store may leave them zero and skip the work of finding them).
	NoEdges bool
}

// Bucket is the aggregate of one twin's numeric values of a property in one interval. Rows
// whose value is not a JSON number are not counted. Buckets without values are left out.
type Bucket struct {
	ID string
	// Start is the aligned start of the bucket (see Aggregation.Interval), which is before
	// From for a first bucket that From cuts.
	Start time.Time
	Count int64
	Avg   float64
	Min   float64
	Max   float64
	// First and Last are the values with the oldest and newest (TimeStamp, Seq).
	First float64
	Last  float64
}

// Snapshot is the twin graph as history tells it at one time: the twins and relationships
// alive then, each with the property values it had. It is a Past with its property objects
// decoded.
type Snapshot struct {
	Twins         []TwinState
	Relationships []RelationshipState
}

// TwinState is a twin in a Snapshot. Properties maps each set property to its value
// (components as objects of their properties).
type TwinState struct {
	ID         string
	ModelID    string
	Properties map[string]json.RawMessage
}

// RelationshipState is a relationship in a Snapshot.
type RelationshipState struct {
	SourceID   string
	ID         string
	Name       string
	TargetID   string
	Properties map[string]json.RawMessage
}

// Past is the twin graph as history tells it at one time, in the form a graph index loads:
// the twins alive then in id order, and the relationships alive then in (source, id) order,
// each with its properties as one JSON object.
type Past struct {
	Twins         []PastTwin
	Relationships []PastRelationship
}

// PastTwin is a twin in a Past. Properties is a compact JSON object of the properties it
// had (components as objects of their properties), its members in the byte order of their
// names; "{}" when it had none.
type PastTwin struct {
	ID         string
	ModelID    string
	Properties json.RawMessage
}

// PastRelationship is a relationship in a Past, its Properties as a PastTwin's.
type PastRelationship struct {
	SourceID   string
	ID         string
	Name       string
	TargetID   string
	Properties json.RawMessage
}

// AsOf returns the graph st tells as of t, decoded: st.Past(t).Snapshot().
func AsOf(ctx context.Context, st Store, t time.Time) (Snapshot, error) {
	p, err := st.Past(ctx, t)
	if err != nil {
		return Snapshot{}, err
	}
	return p.Snapshot()
}

// Snapshot returns p with its property objects decoded.
func (p Past) Snapshot() (Snapshot, error) {
	s := Snapshot{
		Twins:         make([]TwinState, len(p.Twins)),
		Relationships: make([]RelationshipState, len(p.Relationships)),
	}
	for i, t := range p.Twins {
		s.Twins[i] = TwinState{ID: t.ID, ModelID: t.ModelID}
		if err := json.Unmarshal(t.Properties, &s.Twins[i].Properties); err != nil {
			return Snapshot{}, fmt.Errorf("decode the properties of twin %q: %w", t.ID, err)
		}
	}
	for i, r := range p.Relationships {
		s.Relationships[i] = RelationshipState{SourceID: r.SourceID, ID: r.ID, Name: r.Name, TargetID: r.TargetID}
		if err := json.Unmarshal(r.Properties, &s.Relationships[i].Properties); err != nil {
			return Snapshot{}, fmt.Errorf("decode the properties of relationship %q of %q: %w", r.ID, r.SourceID, err)
		}
	}
	return s, nil
}

// Member is a property of a twin or relationship as a store reads it for Past: its name,
// the Seq of the row that set it and, unless the row removed it, its JSON value.
type Member struct {
	Key   string
	Seq   uint64
	Value json.RawMessage // nil when the row removed the property
}

// AppendProperties appends to dst the JSON object of the properties members leave set by
// Seq from created on: of each key, the member with the greatest Seq wins, unless that Seq
// is below created; a winner without a Value leaves the key out. It sorts members.
func AppendProperties(dst []byte, members []Member, created uint64) []byte {
	slices.SortFunc(members, func(a, b Member) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	dst = append(dst, '{')
	first := true
	for i, m := range members {
		if i+1 < len(members) && members[i+1].Key == m.Key {
			continue // superseded
		}
		if m.Value == nil || m.Seq < created {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = jsontext.AppendString(dst, m.Key)
		dst = append(dst, ':')
		dst = append(dst, m.Value...)
	}
	return append(dst, '}')
}

// TableStats describes one table.
type TableStats struct {
	Name string
	Rows int64
}

// Stats describes a store: its tables (the roll-up table last), its size on disk, its
// cursor and how far its roll-ups go.
type Stats struct {
	Tables []TableStats
	Bytes  int64
	Cursor uint64
	// RolledUpTo is the roll-ups' watermark: the raw rows before it are rolled up. The zero
	// time when nothing is.
	RolledUpTo time.Time
}

// Store keeps history rows and the cursor of the writer that produced them. It is safe for
// concurrent use; Write calls are serialised.
//
// Contract:
//   - Write commits every row of rows and sets the cursor to through in one durable
//     transaction: after it returns nil, a crash loses neither; after it fails, neither
//     changed. Rows whose Seq is at or below the cursor stored before the call are dropped,
//     so writing again what a crash cut short never duplicates a row. through must be at
//     least every row's Seq; a through below the stored cursor leaves the cursor alone.
//   - Cursor returns the Seq through which the log is done; 0 before the first Write.
//   - Select yields the property rows q selects in (TimeStamp, Seq, Key) order; after an
//     error it yields it (with a zero row) and stops. Breaking out early is allowed.
//   - Latest returns the newest property row (by Seq) of one property of a twin (or of one of
//     its relationships); ok is false when there is none.
//   - Aggregate, Past: see Aggregation and Past. Past(t) counts rows with TimeStamp <= t and
//     reads one snapshot of the store. Of each property (of each twin and of each
//     relationship), the row with the greatest Seq counts; a twin's model is the ModelID of
//     its newest property row after its creation that names one, else its lifecycle
//     row's. Property rows older than the creation of their twin or relationship
//     do not count.
//     Aggregate answers as if from the raw rows, whatever the roll-ups hold (sums and
//     averages aside, which may differ in the last bits of floating point).
//   - Rollup takes one short step of rolling raw property rows up into the hourly roll-ups
//     (see HourlySuffix): it aggregates a bounded slice of the rows at or above the
//     watermark and below upTo, merges it into the roll-ups and moves the watermark past it,
//     in one transaction. done is true when the watermark has reached upTo (it never moves
//     back: an upTo at or below it is done at once). Write merges the rows it inserts below
//     the watermark, and Prune keeps the roll-ups consistent with what it deletes, so
//     rolling up never changes what Aggregate answers, only how fast.
//   - Prune deletes up to max rows (0: no limit) with TimeStamp before before and returns
//     how many it deleted, keeping every row Past needs for times at or after before: the
//     newest row of each property and of each entity's lifecycle, unless the entity was
//     deleted before before. Telemetry and anomaly rows before before all go. max bounds the rows
//     deleted one by one; a store that drops a whole partition of prunable rows at once
//     may delete, and report, more. The roll-ups of hours before the whole hour at or after
//     before go too (counted among the rows deleted): Aggregate answers those hours from the
//     raw rows left.
//   - Lifecycle returns the lifecycle rows q selects, in Seq order: a twin's creations and
//     deletions, and those of the relationships it is the source of. Like every history, it
//     outlives the twin; an unknown twin has none.
//   - Anomalies returns the anomaly rows q selects, in Seq order.
//   - Close releases the store; calls after Close fail.
type Store interface {
	Write(ctx context.Context, rows *Rows, through uint64) error
	Cursor(ctx context.Context) (uint64, error)
	Select(ctx context.Context, q Selection) iter.Seq2[PropertyEvent, error]
	Latest(ctx context.Context, id, relationshipID, key string) (row PropertyEvent, ok bool, err error)
	Lifecycle(ctx context.Context, q LifecycleSelection) ([]LifecycleEvent, error)
	Anomalies(ctx context.Context, q AnomalySelection) ([]AnomalyEvent, error)
	Aggregate(ctx context.Context, q Aggregation) ([]Bucket, error)
	Rollup(ctx context.Context, upTo time.Time) (done bool, err error)
	Past(ctx context.Context, t time.Time) (Past, error)
	Prune(ctx context.Context, before time.Time, max int) (int, error)
	Stats(ctx context.Context) (Stats, error)
	Close() error
}

// oldest returns the oldest TimeStamp of r's twin, relationship and property rows, which
// are what Past reads; the zero time when there are none.
func (r *Rows) oldest() time.Time {
	var t time.Time
	note := func(ts time.Time) {
		if t.IsZero() || ts.Before(t) {
			t = ts
		}
	}
	for i := range r.Properties {
		note(r.Properties[i].TimeStamp)
	}
	for i := range r.Twins {
		note(r.Twins[i].TimeStamp)
	}
	for i := range r.Relationships {
		note(r.Relationships[i].TimeStamp)
	}
	return t
}

// Checkpointer is a Store that keeps checkpoints of its past: the newest property rows of
// every twin and relationship at a time, folded, so that Past at or after that time reads
// the checkpoint and the rows after it instead of every row before it. Checkpoints change
// how fast Past answers, never what it answers.
//
// Contract:
//   - Checkpoint takes one step toward keeping checkpoints up to upTo: it builds the next
//     checkpoint that is due (the store decides which, from the rows it has), or clears away
//     the remains of one no longer valid; done is true when nothing is due. A step reads one
//     snapshot and writes in short transactions, so Writes go on while it runs.
//   - A Write of a row older than a checkpoint's time invalidates that checkpoint, and a
//     checkpoint being built when such a row arrives is not published.
type Checkpointer interface {
	Store
	Checkpoint(ctx context.Context, upTo time.Time) (done bool, err error)
}

// Tables names the tables of a store. Empty names take the defaults.
type Tables struct {
	Properties            string
	TwinLifecycle         string
	RelationshipLifecycle string
	Telemetry             string
	Anomalies             string
}

// WithDefaults returns t with empty names set to ADT's defaults.
func (t Tables) WithDefaults() Tables {
	if t.Properties == "" {
		t.Properties = DefaultPropertyTable
	}
	if t.TwinLifecycle == "" {
		t.TwinLifecycle = DefaultTwinLifecycleTable
	}
	if t.RelationshipLifecycle == "" {
		t.RelationshipLifecycle = DefaultRelationshipLifecycleTable
	}
	if t.Telemetry == "" {
		t.Telemetry = DefaultTelemetryTable
	}
	if t.Anomalies == "" {
		t.Anomalies = DefaultAnomalyTable
	}
	return t
}

// Validate reports a name that is not a plain identifier (letters, digits, underscores, not
// starting with a digit), since stores put the names into SQL.
func (t Tables) Validate() error {
	var errs []error
	for _, n := range []struct{ field, name string }{
		{"properties", t.Properties}, {"twinLifecycle", t.TwinLifecycle}, {"relationshipLifecycle", t.RelationshipLifecycle},
		{"telemetry", t.Telemetry}, {"anomalies", t.Anomalies},
	} {
		if !identifier(n.name) {
			errs = append(errs, fmt.Errorf("%s: table name %q is not an identifier", n.field, n.name))
		}
	}
	return errors.Join(errs...)
}

func identifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
