package postgres

import (
	"fmt"
	"iter"

	"github.com/twinflow/twinflow/internal/store"
)

// The Reader of a View scans whole tables in one statement each.
var _ store.Scanner = (*reader)(nil)

// ScanTwins implements store.Scanner, in the table's physical order. It is for the Readers of
// a View only: in a Writer it yields an error.
func (r *reader) ScanTwins() iter.Seq2[store.Twin, error] {
	return scanAll(r, "twins", "SELECT "+twinColumns+" FROM twins", scanTwin)
}

// ScanRelationships implements store.Scanner, like ScanTwins.
func (r *reader) ScanRelationships() iter.Seq2[store.Relationship, error] {
	return scanAll(r, "relationships", "SELECT "+relationshipColumns+" FROM relationships", scanRelationship)
}

// scanAll yields every row query returns, decoded by scan, streaming them from the View's
// transaction.
func scanAll[T any](r *reader, what, query string, scan func(scanner) (T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if r.tx == nil {
			yield(zero, fmt.Errorf("scan %s: a scan needs a View's reader", what))
			return
		}
		// A scan streams a whole table to a reader that may take its time with each row:
		// the statement timeout, meant for statements waiting on locks, does not bound it.
		if _, err := r.tx.Exec(r.ctx, "SET LOCAL statement_timeout = 0"); err != nil {
			yield(zero, fmt.Errorf("scan %s: %w", what, err))
			return
		}
		rows, err := r.tx.Query(r.ctx, query)
		if err != nil {
			yield(zero, fmt.Errorf("scan %s: %w", what, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				yield(zero, fmt.Errorf("scan %s: %w", what, err))
				return
			}
			if !yield(v, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(zero, fmt.Errorf("scan %s: %w", what, err))
		}
	}
}
