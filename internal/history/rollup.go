package history

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// Number returns v's value when v is a JSON number a float64 holds: the values aggregates
// and roll-ups count, which the stores keep in their Num column. ok is false for any other
// JSON value.
func Number(v []byte) (n float64, ok bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	n, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Roll-ups: each store keeps, beside its property table, a table of hourly aggregates of the
// numeric values of twin properties (relationship properties are left out), one row per (Id,
// Key, hour) with the count, sum, minimum and maximum of the values and the first and last
// value with their (TimeStamp, Seq). These are mergeable: an hour's row is the merge of the
// rows of any split of its raw rows.
//
// The roll-ups cover the raw rows with TimeStamp in [floor, watermark), both kept durably in
// the store:
//   - Store.Rollup moves the watermark up, aggregating the raw rows above it in SQL in short
//     transactions, so that it never holds the writer up for long;
//   - Store.Write merges into the roll-ups, in its own transaction, every row it inserts below
//     the watermark (a late row), so that the roll-ups stay exact;
//   - Store.Prune raises the floor to the whole hour at or after its cut before it deletes a
//     raw row, and deletes the roll-ups below it: raw rows are deleted only below that hour,
//     so the hours at or above the floor stay exact, and Aggregate answers the hours below it
//     from the raw rows retention kept.
//
// Aggregate answers the whole hours of [From, To) at or above the floor and below the
// watermark from the roll-ups (when Interval is a whole number of hours) and the rest from
// raw rows, merging per bucket: see RollupSpan and Merger.

// HourlySuffix ends the name of the roll-up table: the property table's name followed by it.
const HourlySuffix = "_Hourly"

// Hourly returns the name of the roll-up table of t's property table.
func (t Tables) Hourly() string { return t.Properties + HourlySuffix }

// Bin returns the start of the bucket of width d that holds t, buckets being counted from
// the Unix epoch: Kusto's bin(t, d). d must be positive.
func Bin(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	r := ns % int64(d)
	if r < 0 {
		r += int64(d)
	}
	return time.Unix(0, ns-r).UTC()
}

// RollupSpan returns the hours [lo, hi) of q that a store answers from its roll-ups: the
// whole hours inside [q.From, q.To) at or after floor and ending at or before watermark.
// It is empty (lo equal to hi) when q.Interval is not a whole number of hours, when no
// such hour exists, or when watermark is zero (nothing rolled up). A zero floor is no
// bound.
func RollupSpan(q Aggregation, floor, watermark time.Time) (lo, hi time.Time) {
	if q.Interval <= 0 || q.Interval%time.Hour != 0 || watermark.IsZero() {
		return q.From, q.From
	}
	lo = Bin(q.From.Add(time.Hour-1), time.Hour) // the first whole hour at or after From
	if !floor.IsZero() && floor.After(lo) {
		lo = Bin(floor.Add(time.Hour-1), time.Hour)
	}
	hi = Bin(q.To, time.Hour)
	if w := Bin(watermark, time.Hour); w.Before(hi) {
		hi = w
	}
	if !lo.Before(hi) {
		return q.From, q.From
	}
	return lo, hi
}

// RawSpans returns the parts of [q.From, q.To) outside [lo, hi) (from RollupSpan), which a
// store aggregates from raw rows: one or two non-empty ranges.
func RawSpans(q Aggregation, lo, hi time.Time) [][2]time.Time {
	if !lo.Before(hi) {
		return [][2]time.Time{{q.From, q.To}}
	}
	var out [][2]time.Time
	if q.From.Before(lo) {
		out = append(out, [2]time.Time{q.From, lo})
	}
	if hi.Before(q.To) {
		out = append(out, [2]time.Time{hi, q.To})
	}
	return out
}

// Edge is a value with the TimeStamp and Seq of its row: the first or last of a Partial.
type Edge struct {
	TimeStamp time.Time
	Seq       uint64
	Value     float64
}

// compare orders edges by (TimeStamp, Seq).
func (e Edge) compare(o Edge) int {
	return cmp.Or(e.TimeStamp.Compare(o.TimeStamp), cmp.Compare(e.Seq, o.Seq))
}

// Partial is the aggregate of some of the values of one twin's bucket, as a store reads it
// from a roll-up row or from raw rows; partials of the same bucket merge into its Bucket.
// First and Last are zero when the store skipped them (Aggregation.NoEdges).
type Partial struct {
	ID            string
	Start         time.Time // the bucket's start
	Count         int64
	Sum, Min, Max float64
	First, Last   Edge
}

// Merger merges Partials into Buckets. The zero Merger is empty and ready.
type Merger struct {
	index map[mergeKey]int
	parts []Partial
}

type mergeKey struct {
	id    string
	start int64
}

// Add merges p into the bucket of its ID and Start. Partials without values are ignored.
func (m *Merger) Add(p Partial) {
	if p.Count <= 0 {
		return
	}
	if m.index == nil {
		m.index = map[mergeKey]int{}
	}
	k := mergeKey{p.ID, p.Start.UnixNano()}
	i, ok := m.index[k]
	if !ok {
		m.index[k] = len(m.parts)
		m.parts = append(m.parts, p)
		return
	}
	b := &m.parts[i]
	b.Count += p.Count
	b.Sum += p.Sum
	b.Min, b.Max = min(b.Min, p.Min), max(b.Max, p.Max)
	if p.First.compare(b.First) < 0 {
		b.First = p.First
	}
	if p.Last.compare(b.Last) > 0 {
		b.Last = p.Last
	}
}

// Buckets returns the merged buckets ordered by ID and Start.
func (m *Merger) Buckets() []Bucket {
	out := make([]Bucket, len(m.parts))
	for i, p := range m.parts {
		out[i] = Bucket{ID: p.ID, Start: p.Start.UTC(), Count: p.Count, Avg: p.Sum / float64(p.Count), Min: p.Min, Max: p.Max,
			First: p.First.Value, Last: p.Last.Value}
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmp.Or(cmp.Compare(a.ID, b.ID), a.Start.Compare(b.Start)) })
	return out
}
