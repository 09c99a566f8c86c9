// Package sqlite is the embedded store.Store: one SQLite database in WAL mode in a data
// directory, written by a single goroutine that group-commits concurrent Updates.
//
// Every Update is handed to the writer goroutine, which runs waiting Updates (up to
// Config.MaxBatch) in one transaction, each fn inside its own savepoint, commits once, and has
// the sync goroutine fsync the write-ahead log before it answers any caller in the batch. The
// next batch fills while that fsync runs, so one fsync covers every Update that arrived during
// the previous one. Because there is one writer, Updates are serialised by construction and the
// change log's sequence numbers are assigned gap-free in commit order. Views and log reads run
// on a separate pool of read-only connections, concurrently with the writer.
//
// The writer keeps a bounded cache of twins, so the twin read that starts most Updates does
// not reach SQLite, and leaves checkpoints (copying the write-ahead log into the database) to
// a goroutine of their own. CountTwins reads a counter kept by triggers, and Open reads only
// the schema version and the newest log Seq, so neither depends on the size of the store.
//
// Durability: an acknowledged Update, with its events, survives a crash of the process or the
// machine (unless Config.NoSync, which gives up the machine). Log().Read hands out only records
// whose fsync completed. A View, however, may see a batch that committed but whose fsync is
// still running, that is, before its Updates were acknowledged; a machine crash in that window
// loses that state together with the unacknowledged Updates.
//
// One process at a time may open a data directory: Open locks it (see LockFileName).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	// The pure Go SQLite driver, registered as "sqlite".
	driver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/logtail"
)

// FileName is the name of the database file in the data directory. SQLite keeps its
// write-ahead log and shared-memory index beside it (FileName + "-wal", FileName + "-shm").
const FileName = "twinflow.db"

// LockFileName is the file in the data directory that an open Store holds an exclusive
// advisory lock on, so that a second process cannot open the directory and corrupt it.
const LockFileName = "twinflow.lock"

// DefaultMaxBatch is the number of Updates that share one transaction when Config.MaxBatch is
// zero.
const DefaultMaxBatch = 256

// DefaultTwinCacheBytes is the size of the writer's twin cache when Config.TwinCacheBytes is
// zero.
const DefaultTwinCacheBytes = 64 << 20

// cacheKiB and readerCacheKiB are the most SQLite's page cache takes on the writer's (and
// the checkpointer's) connection and on each read-only one. The cache grows only as pages are
// read; the writer's, which every Update goes through, is the one worth a large budget.
const (
	cacheKiB       = 64 << 10
	readerCacheKiB = 16 << 10
)

// walSizeLimit is the size in bytes the write-ahead log is truncated to after a checkpoint.
const walSizeLimit = 64 << 20

// checkpointInterval is the least time between two checkpoints. Each checkpoint copies the
// newest version of every page changed since the last one into the database and fsyncs it;
// fewer checkpoints copy a page changed many times fewer times, but let the write-ahead log
// grow longer. The database's fsync shares the disk with the write-ahead log's, so a
// checkpoint delays the fsyncs that acknowledge Updates. Under twinflow bench patch (10,000
// twins, about 8,000 patches/s) 500ms rather than 100ms cut the p99 PATCH latency from 38ms
// to 23ms at the same throughput.
const checkpointInterval = 500 * time.Millisecond

// restartFrames is the length of the write-ahead log, in pages, beyond which the writer
// finishes checkpoints itself so that the log starts over (see checkpointer). It is
// walSizeLimit in 4 KiB pages, so that a log that starts over is not also truncated.
const restartFrames = walSizeLimit / 4096

// syncQueue is the number of committed batches that may wait for an fsync before the writer
// goroutine waits for the sync goroutine.
const syncQueue = 4

// busyTimeoutMillis is how long a connection waits for a lock held by another. Within one
// process only checkpoints and the schema migration take locks readers wait for.
const busyTimeoutMillis = 10_000

// Config configures a Store. The zero value, given a Dir, is the durable default.
type Config struct {
	// Dir is the data directory; it and the database in it are created when missing.
	Dir string
	// NoSync acknowledges an Update once SQLite has written its commit to the write-ahead log,
	// without an fsync. Acknowledged Updates still survive a crash of the process, but not of
	// the machine. By default the write-ahead log is fsync'd after every commit, before its
	// Updates are acknowledged.
	NoSync bool
	// MaxBatch is the largest number of Updates committed in one transaction; 0 means
	// DefaultMaxBatch.
	MaxBatch int
	// Readers is the number of read-only connections serving View and Log().Read; 0 means
	// twice GOMAXPROCS.
	Readers int
	// TwinCacheBytes bounds the writer's cache of twins, which spares most Updates reading
	// their twin from SQLite; 0 means DefaultTwinCacheBytes, a negative value disables it.
	TwinCacheBytes int
	// Space, when set, tells whether the disk is full, and is told when a commit failed
	// because it is. While it is full the writer writes only deletes (see Update). Without
	// it, a full disk fails each Update that meets it.
	Space Space
}

// Space is the full state of the disk the store is on, as a reserve.Reserve keeps it.
type Space interface {
	// Full reports whether the disk is full.
	Full() bool
	// Exhausted is told of every failed commit; it reports whether err says that the disk
	// is full (it wraps store.ErrFull), and then takes the disk to be full.
	Exhausted(err error) bool
}

// withDefaults returns cfg with zero fields set to their defaults, or an error describing
// every invalid field.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("dir: must be set"))
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultMaxBatch
	case cfg.MaxBatch < 0:
		errs = append(errs, fmt.Errorf("maxBatch: %d is negative", cfg.MaxBatch))
	}
	switch {
	case cfg.Readers == 0:
		cfg.Readers = 2 * runtime.GOMAXPROCS(0)
	case cfg.Readers < 0:
		errs = append(errs, fmt.Errorf("readers: %d is negative", cfg.Readers))
	}
	if cfg.TwinCacheBytes == 0 {
		cfg.TwinCacheBytes = DefaultTwinCacheBytes
	}
	return cfg, errors.Join(errs...)
}

// Store is the SQLite store.Store. Its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	logger *slog.Logger

	// writerConn is the writer's connection, used only by the writer goroutine.
	writerConn
	w writer // the writer's statements and state, used only by the writer goroutine

	rdb       *sql.DB       // the read-only pool
	readStmts []*sql.Stmt   // read statements prepared on rdb
	log       changeLog     // the store.Log view of the store
	requests  sync.Pool     // of *request, reused to keep the write path free of allocations
	reqs      chan *request // Updates waiting for the writer goroutine
	done      chan struct{} // closed when the writer and sync goroutines have returned

	// mu guards closed. Update, View and Log().Read register in pending or active under a
	// read lock, so once Close has set closed under the write lock no new call gets in, and
	// waiting on the groups waits for every call that did.
	mu      sync.RWMutex
	closed  bool
	pending sync.WaitGroup // Updates between admission and answer
	active  sync.WaitGroup // Views and log reads in progress

	// last is the Seq of the newest durable record; tail holds the newest records in memory,
	// pushed to before last advances past them.
	last atomic.Uint64
	// tail keeps the newest durable log records in memory, each with the state its change left
	// behind, so that readers following the head of the log (relays through Log().Read, the graph
	// index through ReadChanges) neither query SQLite nor decode JSON for them. It is one of the
	// copies of twin state the write path keeps (see package store).
	//
	// Writers: acknowledge pushes each batch's records once the fsync that makes them durable
	// succeeded (with Config.NoSync, once the batch committed), just before it advances the log's
	// Last past them: on the sync goroutine, or on the writer goroutine with NoSync, so batches
	// arrive one at a time and in Seq order. PruneLog, on the writer goroutine, drops the records
	// it deletes before its transaction commits, and Push keeps them out from then on: a batch
	// that committed before the prune can be acknowledged, and pushed, after it, for the prune
	// runs on the writer goroutine while the batch's fsync runs on the sync goroutine. Should the
	// prune roll back, readers merely read those records from the database. Readers: readLog, for
	// Log().Read and ReadChanges, on the callers' goroutines.
	//
	// Invariants:
	//   - It holds only records of committed batches: the records of a fn that failed, and of a
	//     batch that rolled back or whose fsync failed, never reach it (apply and commit take
	//     them out of writer.pending; acknowledge pushes nothing on a failed fsync).
	//   - No reader gets a record before it is durable: Push runs just before Last advances, so
	//     the tail's newest record is past Last only while its batch is being acknowledged, and
	//     Read hands out nothing past upTo, for which readLog passes Last.
	//   - It holds no record PruneLog deleted (DropThrough keeps them out).
	//   - It holds a contiguous run of Seqs (Push starts it over at a gap). It need not reach
	//     back to the oldest record: it is empty after Open, keeps at most
	//     logtail.DefaultRecords records and about logtail.DefaultBytes, and readLog reads the
	//     database whenever the tail lacks record after+1, handing those records out without
	//     their states (not Known).
	//   - A Known record's state (Twin or Relationship) is what the Update that emitted it left
	//     its subject in (see writer.settle). Twin states share their documents with the writer's
	//     twin cache, and records are shared with every reader: nobody modifies them.
	tail *logtail.Tail
	// notifyMu guards changed, which is closed and replaced after every commit that appended
	// records, and closed for good (and set to nil) by Close.
	notifyMu sync.Mutex
	changed  chan struct{}

	path string // of the database file
	// syncs carries committed batches from the writer goroutine to the sync goroutine, which
	// closes done when it returns; spare carries their emptied slices back for reuse.
	syncs chan committed
	spare chan []*request
	// synced tells the writer goroutine that the sync goroutine answered what it was given.
	synced chan struct{}
	// ckpt copies the write-ahead log into the database; it stops once done is closed.
	ckpt *checkpointer
	wal  *os.File // the write-ahead log file, which the sync goroutine fsyncs
	lock *os.File // the locked LockFileName, released when closed
	// failure is set once an fsync failed; every later Update fails with it. failed is
	// closed then.
	failure atomic.Pointer[error]
	failed  chan struct{}

	// batches and batched count committed transactions and the Updates they carried; fsyncs
	// and fsyncNanos count the fsyncs of the write-ahead log and the time they took.
	batches, batched   atomic.Uint64
	fsyncs, fsyncNanos atomic.Uint64
}

// Stats returns the write path's counters. It is safe to call at any time; the counters are
// read one by one, so while Updates run they may be a moment apart.
func (s *Store) Stats() store.Stats {
	return store.Stats{
		Transactions: s.batches.Load(),
		Updates:      s.batched.Load(),
		Syncs:        s.fsyncs.Load(),
		SyncTime:     time.Duration(s.fsyncNanos.Load()),
	}
}

var _ store.Store = (*Store)(nil)

// request is one Update on its way through the writer goroutine.
type request struct {
	ctx context.Context
	fn  func(store.Writer) error
	// err and panicked are the outcome, set by the writer goroutine before it signals done.
	err      error
	panicked any
	done     chan struct{}
}

// Open opens (creating if needed) the store in cfg.Dir and starts its goroutines. Open
// reads no more than the schema version and the newest log Seq, so it takes the same time for
// any number of stored twins; SQLite recovers from its write-ahead log after a crash.
func Open(cfg Config, logger *slog.Logger) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sqlite store config: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(cfg.Dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("locate database: %w", err)
	}
	s := &Store{
		cfg:     cfg,
		logger:  logger,
		reqs:    make(chan *request, cfg.MaxBatch),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		path:    path,
		syncs:   make(chan committed, syncQueue),
		spare:   make(chan []*request, syncQueue+2),
		synced:  make(chan struct{}, 1),
		tail:    logtail.New(logtail.DefaultRecords, logtail.DefaultBytes),
		failed:  make(chan struct{}),
	}
	if s.lock, err = lockDir(filepath.Join(cfg.Dir, LockFileName)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.log.s = s
	s.w.cache, s.w.tail = newTwinCache(cfg.TwinCacheBytes), s.tail
	s.requests.New = func() any { return &request{done: make(chan struct{}, 1)} }
	if err := s.open(path); err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), s.closeDBs())
	}
	go s.run()
	go s.syncLoop()
	go s.ckpt.run(s.done)
	logger.Info("store opened", "path", path, "last_seq", s.last.Load(), "sync", !cfg.NoSync)
	return s, nil
}

// open opens the writer's connection and the read pool, migrates the schema, prepares the
// statements and reads the newest Seq. On error the caller closes what was opened.
func (s *Store) open(path string) error {
	ctx := context.Background()
	var err error
	if s.writerConn, err = openWriter(ctx, path); err != nil {
		return err
	}
	s.w.stmts = s.stmts
	// SQLite created the write-ahead log file when the migration read the database; it keeps
	// it while a connection is open. It is opened for writing only because some systems
	// require that to flush a file; nothing writes to it but SQLite.
	if s.wal, err = os.OpenFile(path+"-wal", os.O_RDWR, 0); err != nil {
		return fmt.Errorf("open write-ahead log: %w", err)
	}
	// max(seq) is answered from the end of the log's b-tree, whatever the log's length.
	var last sql.NullInt64
	if err := s.conn.QueryRowContext(ctx, "SELECT max(seq) FROM log").Scan(&last); err != nil {
		return fmt.Errorf("read newest log seq: %w", err)
	}
	s.last.Store(uint64(last.Int64))
	err = s.conn.QueryRowContext(ctx, "SELECT coalesce((SELECT ms FROM log_clock ORDER BY seq DESC LIMIT 1), 0)").Scan(&s.w.clock)
	if err != nil {
		return fmt.Errorf("read the log clock's newest mark: %w", err)
	}
	// The writer's statements must not be interrupted halfway through a batch, and a context
	// that cannot end spares the driver a watcher goroutine per statement.
	s.w.ctx = context.WithoutCancel(ctx)
	s.w.seq = uint64(last.Int64) + 1

	if s.ckpt, err = newCheckpointer(path, s.cfg.Space, s.logger); err != nil {
		return err
	}

	s.rdb, err = sql.Open("sqlite", dsn(path, true,
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis), fmt.Sprintf("cache_size(%d)", -readerCacheKiB)))
	if err != nil {
		return err
	}
	s.rdb.SetMaxOpenConns(s.cfg.Readers)
	s.rdb.SetMaxIdleConns(s.cfg.Readers)
	if s.readStmts, err = prepare(ctx, numReadStmts, s.rdb.PrepareContext); err != nil {
		return err
	}
	return nil
}

// writerConn is a writer's one connection to the database, with the schema migrated and
// every statement prepared.
type writerConn struct {
	db    *sql.DB // holds the one connection
	conn  *sql.Conn
	stmts []*sql.Stmt
}

// openWriter opens the writer's connection to the database at path, creating the database
// or migrating its schema as needed, and prepares the statements. On error it closes what it
// opened.
func openWriter(ctx context.Context, path string) (wc writerConn, err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, wc.close())
		}
	}()
	if wc.db, err = sql.Open("sqlite", writerDSN(path)); err != nil {
		return wc, err
	}
	wc.db.SetMaxOpenConns(1)
	if wc.conn, err = wc.db.Conn(ctx); err != nil {
		return wc, fmt.Errorf("connect writer: %w", err)
	}
	if err := migrate(ctx, wc.conn); err != nil {
		return wc, err
	}
	if wc.stmts, err = prepare(ctx, numStmts, wc.conn.PrepareContext); err != nil {
		return wc, err
	}
	return wc, nil
}

// close closes the statements and the connection; it may be called on a writerConn that
// openWriter left partly open.
func (wc *writerConn) close() error {
	closeStmts(wc.stmts)
	wc.stmts = nil
	var errs []error
	if wc.conn != nil {
		errs = append(errs, wc.conn.Close())
	}
	if wc.db != nil {
		errs = append(errs, wc.db.Close())
	}
	return errors.Join(errs...)
}

// writerDSN returns the driver's name for the writer's connection to the database at path.
// Commits run with synchronous=NORMAL: the sync goroutine, not the commit, fsyncs the
// write-ahead log (see syncWAL).
func writerDSN(path string) string {
	// Savepoints keep the pages they change in a sub-journal; in memory rather than in a
	// temporary file, a savepoint costs a page copy instead of file writes. Checkpoints are
	// the checkpoint goroutine's (wal_autocheckpoint(0)), so they do not stall the writer.
	// After a checkpoint, journal_size_limit truncates a write-ahead log grown by a large
	// transaction, which bounds the log a crash recovery has to read.
	return dsn(path, false, "journal_mode(WAL)", "synchronous(NORMAL)", "temp_store(MEMORY)", "wal_autocheckpoint(0)",
		fmt.Sprintf("journal_size_limit(%d)", walSizeLimit),
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis), fmt.Sprintf("cache_size(%d)", -cacheKiB))
}

// dsn returns the driver's name for the database at path with the given pragmas, read-only if
// ro.
func dsn(path string, ro bool, pragmas ...string) string {
	q := url.Values{}
	if ro {
		q.Set("mode", "ro")
	}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// View implements store.Store: fn reads one read transaction, a consistent snapshot of
// committed state taken at its first read. Reads honour ctx. The Reader is valid only until
// fn returns.
func (s *Store) View(ctx context.Context, fn func(store.Reader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&reader{ctx: ctx, tx: tx, stmts: s.readStmts})
}

// Update implements store.Store. Updates are serialised by construction: one goroutine runs
// every fn, one after another, so a fn's read-check-write (such as comparing an ETag before
// replacing a twin) is atomic, and fn sees every Update acknowledged before it began. fn runs
// on the writer goroutine, inside a savepoint of a transaction it may share with other
// Updates: keep it short, and do not block or call the Store from it. The Writer is valid only
// until fn returns.
//
// Update returns nil only after the transaction holding fn's changes and events committed and
// was fsync'd (unless Config.NoSync). If fn returns an error, its changes and events are rolled
// back, its neighbours in the batch are unaffected, and Update returns that error. If storage
// fails (including the commit), every Update in the batch fails. If ctx ends before the writer
// reaches fn, fn is not run and Update returns ctx's error; once fn ran, Update waits for the
// commit. A panic in fn is raised again in Update's goroutine after fn's changes were rolled
// back.
//
// When a commit fails because the disk is full, its Updates fail with an error wrapping
// store.ErrFull, and Config.Space is told. While Space says the disk is full, the Writer runs
// only statements that delete, and Emit after one of them in the same fn, so that deleting
// entities (with the events of their deletion) still works and frees room inside the
// database, while anything else fails at once with store.ErrFull, without touching the disk.
// A fn refused a change fails even if it ignores the error. Once the store has failed (see
// Failed), every Update fails with store.ErrFailed.
func (s *Store) Update(ctx context.Context, fn func(store.Writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.enter(&s.pending) {
		return store.ErrClosed
	}
	req := s.requests.Get().(*request)
	req.ctx, req.fn = ctx, fn
	s.reqs <- req
	<-req.done
	s.pending.Done()
	err, panicked := req.err, req.panicked
	*req = request{done: req.done}
	s.requests.Put(req)
	if panicked != nil {
		panic(panicked)
	}
	return err
}

// enter registers a call in group, or reports false if the store is closed.
func (s *Store) enter(group *sync.WaitGroup) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	group.Add(1)
	return true
}

// Log implements store.Store.
func (s *Store) Log() store.Log { return &s.log }

// Failed returns a channel that is closed once the store has failed for good: an fsync of
// the write-ahead log failed, so that which of the commits since the last good fsync reached
// the disk is unknown (the kernel may have dropped the pages it could not write). From then
// on every Update fails with an error wrapping store.ErrFailed, while Views still read. Only
// a new process recovers: Close, then Open again (or a restart), reads back what the disk
// holds.
func (s *Store) Failed() <-chan struct{} { return s.failed }

// Err returns the failure Failed announces, nil while the store works.
func (s *Store) Err() error {
	if err := s.failure.Load(); err != nil {
		return *err
	}
	return nil
}

// DiskFull reports whether err says that the disk is full: SQLite's SQLITE_FULL or a failure
// to grow its shared-memory file, from this store or any other database of the same driver
// (the history store's), or a write's ENOSPC (store.ErrFull).
func DiskFull(err error) bool {
	if se, ok := errors.AsType[*driver.Error](err); ok {
		code := se.Code()
		return code&0xff == sqlite3.SQLITE_FULL || code == sqlite3.SQLITE_IOERR_SHMSIZE
	}
	return errors.Is(err, syscall.ENOSPC)
}

// Close implements store.Store: it waits for every Update already admitted to be committed
// and answered, wakes log readers (which then return store.ErrClosed), waits for Views to
// finish and closes the database. Calls after Close return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()

	s.pending.Wait()
	close(s.reqs)
	<-s.done
	<-s.ckpt.done

	s.notifyMu.Lock()
	close(s.changed)
	s.changed = nil
	s.notifyMu.Unlock()
	s.active.Wait()

	if err := s.closeDBs(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	s.logger.Info("store closed", "last_seq", s.last.Load())
	return nil
}

// closeDBs releases the statements and connections Open acquired.
func (s *Store) closeDBs() error {
	closeStmts(s.readStmts)
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	// The read pool closes first so that the writer's is the last connection: SQLite then
	// checkpoints the write-ahead log into the database and deletes it, and the next Open
	// has no log to recover.
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
	}
	errs = append(errs, s.writerConn.close())
	// The lock goes last, once nothing of the database is open any more.
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

// changeLog is the store.ChangeLog of a Store.
type changeLog struct {
	s *Store
}

var _ store.ChangeLog = (*changeLog)(nil)

// Read implements store.Log. It returns only durable records (Seq <= Last) and waits without
// polling: every commit that appends records wakes it once durable. Records still in the
// in-memory tail are copied from it; older ones are read from the database. max must be
// positive.
func (l *changeLog) Read(ctx context.Context, after uint64, max int) ([]event.Record, error) {
	return readLog(ctx, l.s, after, max, func(c *store.Change) event.Record { return c.Record })
}

// ReadChanges implements store.ChangeLog. Records from the in-memory tail come with their
// state (those whose Update put or deleted their subject are Known); records read back from
// the database do not.
func (l *changeLog) ReadChanges(ctx context.Context, after uint64, max int) ([]store.Change, error) {
	return readLog(ctx, l.s, after, max, func(c *store.Change) store.Change { return *c })
}

// readLog waits until the log holds records after after, then returns up to max of them,
// each converted by conv: from the tail when it holds record after+1, otherwise from the
// database (as Changes that are not Known).
func readLog[T any](ctx context.Context, s *Store, after uint64, max int, conv func(*store.Change) T) ([]T, error) {
	if max <= 0 {
		return nil, fmt.Errorf("read log: max %d is not positive", max)
	}
	if !s.enter(&s.active) {
		return nil, store.ErrClosed
	}
	defer s.active.Done()
	for {
		s.notifyMu.Lock()
		changed := s.changed
		s.notifyMu.Unlock()
		if changed == nil {
			return nil, store.ErrClosed
		}
		if last := s.last.Load(); last > after {
			var out []T
			if s.tail.Read(after, last, max, func(c *store.Change) { out = append(out, conv(c)) }) {
				return out, nil
			}
			r := reader{ctx: ctx, stmts: s.readStmts}
			recs, err := list(&r, "log records", scanRecord, stmtLog, int64(after), int64(last), max)
			if err != nil {
				return nil, err
			}
			if len(recs) > 0 {
				out = make([]T, len(recs))
				for i, rec := range recs {
					out[i] = conv(&store.Change{Record: rec})
				}
				return out, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Last implements store.Log.
func (l *changeLog) Last() uint64 { return l.s.last.Load() }
