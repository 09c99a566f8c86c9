// Package postgres is the scale-out store.Store: models, twins, relationships, the change log
// and delivery, ingress, job and key state in one schema of a PostgreSQL database, which
// several twinflow nodes may share.
//
// # Writes
//
// Each Store has one writer goroutine with a connection of its own. It runs the Updates
// waiting for it (up to Config.MaxBatch) in one transaction, each fn inside its own savepoint,
// and commits once, with the server's synchronous commit: every Update that arrived while the
// previous commit was being flushed shares the next one. Statements that need no answer (the
// puts) are queued and sent, in one round trip, with the next statement that does, of the
// same fn or a later one, or with the commit (see writer); a fn's events stay in memory until
// the commit appends them all. Updates of one Store are serialised by its writer goroutine;
// the Updates of different Stores sharing a schema run concurrently and meet on row locks: a
// Writer reads twins, relationships and models FOR UPDATE (see reader.Twin), so that a
// read-check-write such as an ETag check is atomic across nodes too. Two nodes' batches that
// lock the same rows in opposite orders deadlock; PostgreSQL then fails the statement of one
// fn, which fails that Update alone.
//
// # The change log
//
// Seqs are assigned gap-free in commit order across nodes: a transaction takes its Seqs from
// the one row of the table head just before it commits and holds that row's lock until the
// commit is visible (see appendLog), so a reader that follows seq > cursor never skips a
// record that commits later with a lower Seq. Log().Read wakes on this Store's own commits at
// once, and on other nodes' through LISTEN/NOTIFY, polling the head every
// Config.PollInterval in case a notification is missed.
//
// # Configuration generations
//
// Every transaction that writes models, routes, endpoints, sources or mappings also counts
// itself in that kind's generation, and notifies the other nodes when it commits, as the log
// does. Generations and GenerationsChanged let a node that keeps such configuration in memory
// see another node's change and reload it.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/logtail"
)

// Defaults of Config's zero fields.
const (
	DefaultSchema           = "twinflow"
	DefaultMaxConns         = 8
	DefaultMaxBatch         = 256
	DefaultStatementTimeout = 30 * time.Second
	DefaultPollInterval     = time.Second
)

// Config configures a Store. The zero value, given a DSN, is the durable default.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value form). Required. The store
	// sets its connections' search_path to Schema, statement_timeout to StatementTimeout and
	// synchronous_commit to on, whatever the DSN says.
	DSN string
	// Schema holds the store's tables; it is created when missing. Stores sharing a schema
	// share their state. Empty means DefaultSchema; otherwise a lower-case identifier.
	Schema string
	// MaxConns bounds the pool serving View and Log().Read; 0 means DefaultMaxConns. The
	// writer and the log's listener have a connection each besides.
	MaxConns int32
	// MaxBatch is the largest number of Updates committed in one transaction; 0 means
	// DefaultMaxBatch.
	MaxBatch int
	// StatementTimeout bounds every statement, such as one waiting for a row another node
	// holds; 0 means DefaultStatementTimeout.
	StatementTimeout time.Duration
	// PollInterval is how often the log looks for other nodes' commits when no notification
	// came; 0 means DefaultPollInterval.
	PollInterval time.Duration
}

// withDefaults returns cfg with zero fields set to their defaults, or an error describing
// every invalid field.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.DSN == "" {
		errs = append(errs, errors.New("dsn: must be set"))
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if !identifier(cfg.Schema) {
		errs = append(errs, fmt.Errorf("schema: %q is not a lower-case identifier of up to 63 bytes", cfg.Schema))
	}
	switch {
	case cfg.MaxConns == 0:
		cfg.MaxConns = DefaultMaxConns
	case cfg.MaxConns < 0:
		errs = append(errs, fmt.Errorf("maxConns: %d is negative", cfg.MaxConns))
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultMaxBatch
	case cfg.MaxBatch < 0:
		errs = append(errs, fmt.Errorf("maxBatch: %d is negative", cfg.MaxBatch))
	}
	switch {
	case cfg.StatementTimeout == 0:
		cfg.StatementTimeout = DefaultStatementTimeout
	case cfg.StatementTimeout < time.Millisecond:
		errs = append(errs, fmt.Errorf("statementTimeout: %v is less than a millisecond", cfg.StatementTimeout))
	}
	switch {
	case cfg.PollInterval == 0:
		cfg.PollInterval = DefaultPollInterval
	case cfg.PollInterval < 0:
		errs = append(errs, fmt.Errorf("pollInterval: %v is negative", cfg.PollInterval))
	}
	return cfg, errors.Join(errs...)
}

// channelOf returns the notification channel of schema's log: "twinflow_log_" and the
// schema's name, or, for a name too long for a channel (which PostgreSQL limits to 63
// bytes, as identifiers), "twinflow_log_" and a hash of the name.
func channelOf(schema string) string {
	const prefix = "twinflow_log_"
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	return prefix + strconv.FormatUint(uint64(lockKey(schema)), 16)
}

// identifier reports whether s is a lower-case SQL identifier PostgreSQL keeps as it is.
func identifier(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Store is the PostgreSQL store.Store. Its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	logger *slog.Logger

	pool *pgxpool.Pool // serves Views and log reads
	w    writer        // used only by the writer goroutine
	log  changeLog
	// channel is the notification channel of the schema's log.
	channel string

	requests sync.Pool     // of *request
	reqs     chan *request // Updates waiting for the writer goroutine
	done     chan struct{} // closed when the writer goroutine has returned
	// stopListen stops the listener goroutine, which closes listened when it returns.
	stopListen context.CancelFunc
	listened   chan struct{}

	// mu guards closed. Update, View and Log().Read register in pending or active under a
	// read lock, so once Close has set closed under the write lock no new call gets in, and
	// waiting on the groups waits for every call that did.
	mu      sync.RWMutex
	closed  bool
	pending sync.WaitGroup // Updates between admission and answer
	active  sync.WaitGroup // Views and log reads in progress

	// last is the Seq of the newest committed record this Store knows of; tail holds this
	// Store's newest records in memory.
	last atomic.Uint64
	// tail keeps this store's newest committed log records in memory, each with the state its
	// change left behind, so that readers following the head of the log (relays through
	// Log().Read, the graph index through ReadChanges) neither query PostgreSQL nor decode JSON for
	// them.
	//
	// Writers: the writer goroutine pushes each batch's records once its commit returned (so they
	// are durable), before it advances the log's Last past them, and PruneLog drops the records it
	// deletes. Other nodes' records never enter it: the records of one store are contiguous only
	// until another node appends, and Push starts over at such a gap. Readers: readLog, for
	// Log().Read and ReadChanges, on the callers' goroutines.
	//
	// Invariants:
	//   - It holds only records of committed batches.
	//   - It holds a contiguous run of Seqs; readLog reads the database whenever the tail lacks
	//     record after+1, handing those records out without their states (not Known).
	//   - It holds no record PruneLog deleted (DropThrough keeps them out).
	//   - A Known record's state is what the Update that emitted it left its subject in; records
	//     are shared with every reader, and nobody modifies them.
	tail *logtail.Tail
	// notifyMu guards changed, which is closed and replaced whenever last advances, and
	// closed for good (and set to nil) by Close.
	notifyMu sync.Mutex
	changed  chan struct{}
	// genMu guards gens, the configuration generations this Store knows of, and genChanged,
	// which is closed and replaced whenever one of them advances (see Generations).
	genMu      sync.Mutex
	gens       generations
	genChanged chan struct{}

	// batches and batched count committed transactions and the Updates they carried.
	batches, batched atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// Stats returns the write path's counters since New. Syncs are left zero: PostgreSQL makes
// the commits durable.
func (s *Store) Stats() store.Stats {
	return store.Stats{Transactions: s.batches.Load(), Updates: s.batched.Load()}
}

// Failed returns nil, a channel that is never closed: a PostgreSQL store does not fail for
// good. An Update whose connection is lost fails on its own, and the next ones reconnect.
func (s *Store) Failed() <-chan struct{} { return nil }

// Err returns nil: a PostgreSQL store does not fail for good (see Failed).
func (s *Store) Err() error { return nil }

// request is one Update on its way through the writer goroutine.
type request struct {
	ctx context.Context
	fn  func(store.Writer) error
	// err and panicked are the outcome, set by the writer goroutine before it signals done.
	err      error
	panicked any
	done     chan struct{}
}

// poolConfig returns the pool configuration of cfg, which has its defaults: its DSN with the
// settings the store relies on whatever the DSN says (the schema, the statement timeout and
// synchronous commit).
func poolConfig(cfg Config) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres store config: dsn: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	params := pc.ConnConfig.RuntimeParams
	params["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	params["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	// Durability is the point of Update: never let a DSN turn it off.
	params["synchronous_commit"] = "on"
	if params["application_name"] == "" {
		params["application_name"] = "twinflow"
	}
	return pc, nil
}

// New connects to the database, creates or migrates the schema (once, however many stores
// start together), and starts the writer and the log's listener.
func New(cfg Config, logger *slog.Logger) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("postgres store config: %w", err)
	}
	pc, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StatementTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect store writer: %w", err)
	}
	if err := migrate(ctx, conn, cfg.Schema); err != nil {
		return nil, errors.Join(fmt.Errorf("migrate schema %s: %w", cfg.Schema, err), conn.Close(ctx))
	}
	if err := prepareControl(ctx, conn); err != nil {
		return nil, errors.Join(fmt.Errorf("connect store writer: %w", err), conn.Close(ctx))
	}
	var (
		last int64
		gens generations
	)
	if err := readHead(conn.QueryRow(ctx, readHeadSQL), &last, &gens); err != nil {
		return nil, errors.Join(fmt.Errorf("read the log's head: %w", err), conn.Close(ctx))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create store pool: %w", err), conn.Close(ctx))
	}
	s := &Store{
		cfg:      cfg,
		logger:   logger,
		pool:     pool,
		channel:  channelOf(cfg.Schema),
		reqs:     make(chan *request, cfg.MaxBatch),
		done:     make(chan struct{}),
		listened: make(chan struct{}),
		tail:     logtail.New(logtail.DefaultRecords, logtail.DefaultBytes),
		changed:  make(chan struct{}),

		gens:       gens,
		genChanged: make(chan struct{}),
	}
	s.last.Store(uint64(last))
	s.log.s = s
	s.w = writer{ctx: context.Background(), conn: conn, connConfig: pc.ConnConfig.Copy(), tail: s.tail, logger: logger}
	s.w.reader.q = &s.w
	s.w.reader.lock = " FOR UPDATE"
	s.requests.New = func() any { return &request{done: make(chan struct{}, 1)} }

	lctx, stop := context.WithCancel(context.Background())
	s.stopListen = stop
	go s.run()
	go s.listen(lctx, pc.ConnConfig.Copy())
	logger.Info("store opened", "schema", cfg.Schema, "last_seq", last)
	return s, nil
}

// View implements store.Store: fn reads one read-only REPEATABLE READ transaction, a
// consistent snapshot of committed state taken at its first read. Reads honour ctx. The
// Reader, which implements store.Scanner, is valid only until fn returns.
func (s *Store) View(ctx context.Context, fn func(store.Reader) error) error {
	return s.view(ctx, "view", func(tx pgx.Tx) error {
		return fn(&reader{q: txQuerier{ctx: ctx, tx: tx}, tx: tx, ctx: ctx})
	})
}

// view runs fn in a read-only snapshot transaction, registered as active.
func (s *Store) view(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return markUnavailable(fmt.Errorf("begin %s: %w", what, err))
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return markUnavailable(fn(tx))
}

// Update implements store.Store. Updates of one Store are serialised by construction: one
// goroutine runs every fn, one after another, in READ COMMITTED transactions, so a fn sees
// every Update acknowledged before it began, on any node. A Writer reads single twins,
// relationships and models FOR UPDATE, holding them until the commit, so a read-check-write
// is atomic across nodes as well. fn runs on the writer goroutine, inside a savepoint of a
// transaction it may share with other Updates: keep it short, and do not block or call the
// Store from it. The Writer is valid only until fn returns.
//
// Update returns nil only after the transaction holding fn's changes and events committed
// with synchronous commit. If fn returns an error, or one of its statements fails (an error
// fn ignored still fails it), its changes and events are rolled back, its neighbours in the
// batch are unaffected, and Update returns that error. If the commit or the connection fails,
// every Update in the batch fails. If ctx ends before the writer reaches fn, fn is not run
// and Update returns ctx's error; once fn ran, Update waits for the commit. A panic in fn is
// raised again in Update's goroutine after fn's changes were rolled back.
func (s *Store) Update(ctx context.Context, fn func(store.Writer) error) error {
	return s.update(ctx, fn)
}

// update hands fn to the writer goroutine and waits for its outcome.
func (s *Store) update(ctx context.Context, fn func(store.Writer) error) error {
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
	return markUnavailable(err)
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

// Close implements store.Store: it waits for every Update already admitted to be committed
// and answered, stops the listener, wakes log readers (which then return store.ErrClosed),
// waits for Views to finish and closes the connections. Calls after Close return
// store.ErrClosed.
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
	s.stopListen()
	<-s.listened

	s.notifyMu.Lock()
	close(s.changed)
	s.changed = nil
	s.notifyMu.Unlock()
	s.active.Wait()

	s.pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.w.conn.Close(ctx); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	s.logger.Info("store closed", "schema", s.cfg.Schema, "last_seq", s.last.Load())
	return nil
}

// advance raises the log's Last to seq, if it is newer, and wakes the log's readers.
func (s *Store) advance(seq uint64) {
	for {
		last := s.last.Load()
		if seq <= last {
			return
		}
		if s.last.CompareAndSwap(last, seq) {
			break
		}
	}
	s.notifyMu.Lock()
	if s.changed != nil {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.notifyMu.Unlock()
}

// decodeRecord decodes a log row.
func decodeRecord(seq int64, buf []byte, depth int32) (event.Record, error) {
	rec := event.Record{Seq: uint64(seq)}
	if err := decodeEvent(buf, &rec.Event); err != nil {
		return event.Record{}, fmt.Errorf("decode log record %d: %w", seq, err)
	}
	rec.Event.Depth = int(depth)
	return rec, nil
}
