package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	// The pure Go SQLite driver, registered as "sqlite"; the store uses the same one.
	_ "modernc.org/sqlite"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// CeilingConfig configures the raw SQLite ceiling measurement.
type CeilingConfig struct {
	// Dir is the data directory to create the database in; it must not hold one yet.
	Dir string
	// Twins is the number of twins patched at random.
	Twins int
	// Batch is the number of patches per transaction. The server's group commit can put at
	// most one patch per concurrent client in a transaction, so the fair ceiling for N
	// clients uses a batch of N.
	Batch int
	// Duration is how long to write.
	Duration time.Duration
}

// CeilingResult is what the ceiling measurement wrote.
type CeilingResult struct {
	Batch   int
	Patches int
	Elapsed time.Duration
	// CPU is the CPU time, user and system, the process used while writing; zero where the
	// system does not report it.
	CPU time.Duration
}

// PatchesPerSecond returns the patches written per second.
func (r CeilingResult) PatchesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Patches) / r.Elapsed.Seconds()
}

// Ceiling measures how fast SQLite alone takes the rows a PATCH writes: it creates twinflow's
// schema in cfg.Dir (by opening the store once), fills it with cfg.Twins twins of the
// benchmark model, and then, for cfg.Duration, commits transactions of cfg.Batch patches, each
// one twin row replaced with a new etag and document and one change log row (the event as
// one JSON value) appended, with the store's durability settings (WAL, synchronous=FULL).
// Twin documents are encoded up front and only the small event is encoded per row, so the
// figure excludes HTTP, patching, validation and the store layer: it is the most a PATCH path
// on this store could reach on this machine.
//
// The statements mirror store/sqlite's twins and log tables; TestPatch fails when that schema
// moves away from them.
func Ceiling(ctx context.Context, cfg CeilingConfig, logger *slog.Logger) (CeilingResult, error) {
	res := CeilingResult{Batch: cfg.Batch}
	st, err := sqlite.Open(sqlite.Config{Dir: cfg.Dir}, logger)
	if err != nil {
		return res, fmt.Errorf("create schema: %w", err)
	}
	if err := st.Close(); err != nil {
		return res, fmt.Errorf("close store: %w", err)
	}

	path := filepath.Join(cfg.Dir, sqlite.FileName)
	db, err := sql.Open("sqlite", "file:"+path+
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return res, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	docs, err := seedTwins(ctx, db, cfg.Twins)
	if err != nil {
		return res, err
	}
	upd, err := db.PrepareContext(ctx, "UPDATE twins SET etag = ?, doc = ? WHERE id = ?")
	if err != nil {
		return res, fmt.Errorf("prepare twin update: %w", err)
	}
	defer upd.Close()
	ins, err := db.PrepareContext(ctx, "INSERT INTO log (seq, event) VALUES (?, ?)")
	if err != nil {
		return res, fmt.Errorf("prepare log insert: %w", err)
	}
	defer ins.Close()
	ids := make([]string, cfg.Twins)
	for i := range ids {
		ids[i] = twinID(i)
	}
	// The event of each row is the JSON a Twin.Update event is stored as, made from a template
	// with its own ID, subject and time, so that the loop costs what SQLite does and little
	// more.
	eventHead, eventTail, err := eventTemplate()
	if err != nil {
		return res, err
	}
	var (
		seq int64
		ev  []byte
	)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	end := start.Add(cfg.Duration)
	for time.Now().Before(end) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return res, fmt.Errorf("begin: %w", err)
		}
		now := twin.FormatTime(time.Now())
		txUpd, txIns := tx.StmtContext(ctx, upd), tx.StmtContext(ctx, ins)
		for range cfg.Batch {
			i := rand.N(cfg.Twins)
			seq++
			if _, err := txUpd.ExecContext(ctx, twin.NewETag(), docs[i], ids[i]); err != nil {
				tx.Rollback()
				return res, fmt.Errorf("update twin: %w", err)
			}
			ev = append(ev[:0], `{"id":"`...)
			ev = append(ev, uuid.NewString()...)
			ev = append(ev, eventHead...)
			ev = append(ev, ids[i]...)
			ev = append(ev, `","time":"`...)
			ev = append(ev, now...)
			ev = append(ev, eventTail...)
			if _, err := txIns.ExecContext(ctx, seq, ev); err != nil {
				tx.Rollback()
				return res, fmt.Errorf("append log record: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return res, fmt.Errorf("commit: %w", err)
		}
		res.Patches += cfg.Batch
	}
	res.Elapsed = time.Since(start)
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CPU = cpu1 - cpu0
	}
	return res, nil
}

// eventTemplate returns the JSON of a benchmark Twin.Update event around its ID, subject and
// time: the event is `{"id":"<id>` + head + `<subject>","time":"<time>` + tail. It is cut
// from the event as encoding/json writes it, so the ceiling stores what the store would.
func eventTemplate() (head, tail string, err error) {
	const id, subject, tm = "@ID@", "@SUBJECT@", "@TIME@"
	b, err := json.Marshal(event.Event{
		ID: id, Source: "localhost", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
		Subject: subject, Time: tm, DataContentType: "application/json",
		Data: json.RawMessage(`{"modelId":"` + modelID + `","patch":[{"value":1.5,"path":"/p0","op":"replace"},{"value":"v7","path":"/p2","op":"replace"}]}`),
	})
	if err != nil {
		return "", "", fmt.Errorf("encode event template: %w", err)
	}
	s := string(b)
	prefix := `{"id":"` + id
	before, after, ok := strings.Cut(s, subject+`","time":"`+tm)
	if !strings.HasPrefix(s, prefix) || !ok {
		return "", "", fmt.Errorf("event template %s does not have its subject right before its time", s)
	}
	return before[len(prefix):], after, nil
}

// seedTwins inserts twins 0..n-1 of the benchmark model in one transaction and returns their
// encoded documents.
func seedTwins(ctx context.Context, db *sql.DB, n int) ([][]byte, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin seeding: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO twins (id, model_id, etag, doc) VALUES (?, ?, ?, ?)")
	if err != nil {
		return nil, fmt.Errorf("prepare twin insert: %w", err)
	}
	defer stmt.Close()
	now := twin.FormatTime(time.Now())
	docs := make([][]byte, n)
	for i := range n {
		etag := twin.NewETag()
		doc, err := twinDocument(i, etag, now)
		if err != nil {
			return nil, err
		}
		docs[i] = doc
		if _, err := stmt.ExecContext(ctx, twinID(i), modelID, etag, doc); err != nil {
			return nil, fmt.Errorf("insert twin %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit seeding: %w", err)
	}
	return docs, nil
}

// twinDocument returns the stored document of benchmark twin i, as the server would store it
// after a PUT of twinBody(i).
func twinDocument(i int, etag, now string) ([]byte, error) {
	doc, err := twin.NewDocument(twinID(i), etag, twinBody(i), func(string) bool { return false }, now)
	if err != nil {
		return nil, fmt.Errorf("build twin document %d: %w", i, err)
	}
	b, err := twin.Encode(doc)
	if err != nil {
		return nil, fmt.Errorf("encode twin document %d: %w", i, err)
	}
	return b, nil
}
