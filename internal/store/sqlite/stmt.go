package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// stmtID names one of the prepared statements a connection keeps.
type stmtID int

// The statements. Reads come first; the writer prepares them all, a View prepares a read on
// first use.
const (
	stmtModel stmtID = iota
	stmtModels
	stmtTwin
	stmtTwins
	stmtRelationship
	stmtRelationships
	stmtRelationshipsNamed
	stmtIncoming
	stmtHasRelationships
	stmtCountTwins
	stmtLog

	stmtPutModel
	stmtDeleteModel
	stmtUpdateTwin
	stmtInsertTwin
	stmtCreateTwin
	stmtDeleteTwin
	stmtPutRelationship
	stmtCreateRelationship
	stmtDeleteRelationship
	stmtEmit
	stmtMarkClock
	stmtRecordMessage

	stmtBegin
	stmtCommit
	stmtRollback
	stmtSavepoint
	stmtRollbackTo
	stmtRelease

	numStmts
	// numReadStmts counts the statements a read-only connection can run.
	numReadStmts = stmtPutModel
)

// The column lists every read of an entity selects, in the order scan functions expect.
const (
	modelColumns        = "id, definition, upload_time, decommissioned"
	twinColumns         = "id, model_id, etag, doc"
	relationshipColumns = "source_id, id, name, target_id, etag, doc"
	logColumns          = "seq, event, depth"
)

// stmtText holds each statement's SQL. A limit of -1 means no limit to SQLite.
var stmtText = [numStmts]string{
	stmtModel:  "SELECT " + modelColumns + " FROM models WHERE id = ?",
	stmtModels: "SELECT " + modelColumns + " FROM models WHERE id > ? ORDER BY id LIMIT ?",
	stmtTwin:   "SELECT " + twinColumns + " FROM twins WHERE id = ?",
	stmtTwins:  "SELECT " + twinColumns + " FROM twins WHERE id > ? ORDER BY id LIMIT ?",
	stmtRelationship: "SELECT " + relationshipColumns +
		" FROM relationships WHERE source_id = ? AND id = ?",
	stmtRelationships: "SELECT " + relationshipColumns +
		" FROM relationships WHERE source_id = ? AND id > ? ORDER BY id LIMIT ?",
	stmtRelationshipsNamed: "SELECT " + relationshipColumns +
		" FROM relationships WHERE source_id = ? AND name = ? AND id > ? ORDER BY id LIMIT ?",
	stmtIncoming: "SELECT " + relationshipColumns +
		" FROM relationships WHERE target_id = ? AND (source_id, id) > (?, ?) ORDER BY source_id, id LIMIT ?",
	stmtHasRelationships: "SELECT EXISTS (SELECT 1 FROM relationships WHERE source_id = ?1)" +
		" OR EXISTS (SELECT 1 FROM relationships WHERE target_id = ?1)",
	stmtCountTwins: "SELECT value FROM meta WHERE key = 'twin_count'",
	stmtLog:        "SELECT " + logColumns + " FROM log WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",

	stmtPutModel: "INSERT INTO models (" + modelColumns + ") VALUES (?, ?, ?, ?)" +
		" ON CONFLICT (id) DO UPDATE SET definition = excluded.definition," +
		" upload_time = excluded.upload_time, decommissioned = excluded.decommissioned",
	stmtDeleteModel: "DELETE FROM models WHERE id = ?",
	// PutTwin updates the twin's row and inserts one only when there is none: most puts
	// replace a twin, and a plain UPDATE costs SQLite less than an upsert.
	stmtUpdateTwin: "UPDATE twins SET model_id = ?2, etag = ?3, doc = ?4 WHERE id = ?1",
	stmtInsertTwin: "INSERT INTO twins (" + twinColumns + ") VALUES (?, ?, ?, ?)",
	stmtCreateTwin: "INSERT INTO twins (" + twinColumns + ") VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
	stmtDeleteTwin: "DELETE FROM twins WHERE id = ?",
	stmtPutRelationship: "INSERT INTO relationships (" + relationshipColumns + ") VALUES (?, ?, ?, ?, ?, ?)" +
		" ON CONFLICT (source_id, id) DO UPDATE SET name = excluded.name, target_id = excluded.target_id," +
		" etag = excluded.etag, doc = excluded.doc",
	// CreateRelationship checks both twins and inserts in one statement. The WHERE clause
	// also keeps SQLite from reading ON CONFLICT as part of the SELECT.
	stmtCreateRelationship: "INSERT INTO relationships (" + relationshipColumns + ")" +
		" SELECT ?1, ?2, ?3, ?4, ?5, ?6" +
		" WHERE EXISTS (SELECT 1 FROM twins WHERE id = ?1 AND model_id = ?7)" +
		" AND EXISTS (SELECT 1 FROM twins WHERE id = ?4 AND model_id = ?8)" +
		" ON CONFLICT (source_id, id) DO NOTHING",
	stmtDeleteRelationship: "DELETE FROM relationships WHERE source_id = ? AND id = ?",
	stmtEmit:               "INSERT INTO log (" + logColumns + ") VALUES (?, ?, ?)",
	// The log's clock gets a mark for a batch's first record unless the newest mark is from
	// the same millisecond (see schema version 2 and commit).
	stmtMarkClock: "INSERT INTO log_clock (seq, ms) VALUES (?, ?)",
	// A message id is recorded unless it is recorded already and has not expired at ?4: the
	// upsert then changes no row (see RecordMessage).
	stmtRecordMessage: "INSERT INTO source_messages (source, id, expires) VALUES (?1, ?2, ?3)" +
		" ON CONFLICT (source, id) DO UPDATE SET expires = excluded.expires WHERE source_messages.expires <= ?4",

	stmtBegin:      "BEGIN IMMEDIATE",
	stmtCommit:     "COMMIT",
	stmtRollback:   "ROLLBACK",
	stmtSavepoint:  "SAVEPOINT fn",
	stmtRollbackTo: "ROLLBACK TO fn",
	stmtRelease:    "RELEASE fn",
}

// prepare prepares statements [0, n) with prep, closing what it prepared if one fails.
func prepare(ctx context.Context, n stmtID, prep func(context.Context, string) (*sql.Stmt, error)) ([]*sql.Stmt, error) {
	stmts := make([]*sql.Stmt, n)
	for id := range n {
		s, err := prep(ctx, stmtText[id])
		if err != nil {
			closeStmts(stmts)
			return nil, fmt.Errorf("prepare %q: %w", stmtText[id], err)
		}
		stmts[id] = s
	}
	return stmts, nil
}

// closeStmts closes every non-nil statement in stmts.
func closeStmts(stmts []*sql.Stmt) {
	for _, s := range stmts {
		if s != nil {
			// Closing a prepared statement only frees it; there is nothing to report.
			_ = s.Close()
		}
	}
}
