package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// CeilingBatch is the rows of one transaction of a Ceiling measurement and the cursor it
// commits with them.
type CeilingBatch struct {
	Rows    history.Rows
	Through uint64
}

// CeilingBatches derives, up front, the rows of every record of log, grouped as a
// history.Writer catching up on log groups them: the records of up to batch (0 means
// history.DefaultMaxBatch) per transaction. opts are the Writer's derivation options.
func CeilingBatches(ctx context.Context, log store.ChangeLog, batch int, opts history.Options) ([]CeilingBatch, error) {
	if batch <= 0 {
		batch = history.DefaultMaxBatch
	}
	var out []CeilingBatch
	for cursor, last := uint64(0), log.Last(); cursor < last; {
		changes, err := log.ReadChanges(ctx, cursor, batch)
		if err != nil {
			return nil, fmt.Errorf("read change log after %d: %w", cursor, err)
		}
		var b CeilingBatch
		prior := history.Overlay(&b.Rows, nil)
		for _, ch := range changes {
			if err := history.Derive(ch, opts, prior, &b.Rows); err != nil {
				return nil, fmt.Errorf("derive the rows of record %d: %w", ch.Seq, err)
			}
		}
		cursor = changes[len(changes)-1].Seq
		b.Through = cursor
		out = append(out, b)
	}
	return out, nil
}

// CeilingResult is what a Ceiling measurement wrote.
type CeilingResult struct {
	// Rows counts the rows written, Transactions the Writes that committed them, Elapsed the
	// time from the first Write's start to the last one's end.
	Rows, Transactions int
	Elapsed            time.Duration
}

// RowsPerSecond returns the rows made durable per second.
func (r CeilingResult) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// Ceiling measures the most history rows per second this store can make durable on this
// machine for the rows of batches: it opens a fresh store in dir (which must not hold one
// yet) with the production durability (synchronous commits), writes each batch in one
// Write, derived beforehand so that no derivation or reading of the log counts against it,
// and closes the store. It is the ceiling of a history.Writer that writes the same rows with
// the same batching.
func Ceiling(ctx context.Context, dir string, batches []CeilingBatch) (res CeilingResult, err error) {
	st, err := Open(Config{Dir: dir})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the ceiling's history store: %w", cerr)
		}
	}()
	start := time.Now()
	for i := range batches {
		if err := st.Write(ctx, &batches[i].Rows, batches[i].Through); err != nil {
			return res, err
		}
		res.Rows += batches[i].Rows.Len()
		res.Transactions++
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
