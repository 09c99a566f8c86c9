// Package server wires twinflow together: it opens the store, builds the twin service
// (package twins), the graph index that queries read (package graph), the runner of import
// and delete jobs (package job) and the ADT API over them, serves them over HTTP(S) with
// health endpoints, Prometheus /metrics and access logs, authenticating requests and
// authorizing them by role (package auth), delivers routed events to endpoints
// (packages eventroute, endpoint and outbox) and applies the messages of ingress sources to
// twins (packages source and ingress/runner) and scores twin properties for anomalies
// (package detector).
//
// # Goroutines
//
// Each long-lived component owns the goroutines it starts, and stops them and waits for them
// before it reports that it stopped (its Run returning, or its Close). The exceptions, noted
// below, are the goroutines of the sinks' client libraries and request handlers cut off at
// shutdown.
//
//   - The store (sqlite.Open) runs its writer, sync and checkpoint goroutines until Close,
//     which waits for them. Views and log reads run on their callers' goroutines; an
//     Update's caller waits while the writer runs it.
//   - graph.New builds the index, and graph.OpenSnapshot loads it from its snapshot, on
//     worker goroutines that have all exited when they return. The index's change-log
//     follower, graph.Index.Run, starts none; queries catch it up with Sync on their own
//     goroutines. The snapshotter (snapshotter.run) writes the index's snapshot on a
//     goroutine of its own, one at a time, next to the follower; the last one is written
//     after the follower stopped.
//   - The job runner, job.Runner.Run, runs one job at a time on its goroutine; an import
//     runs prepare workers and a committer for each section of its input, and waits for
//     them before it goes on to the next section or returns.
//   - The endpoint registry (endpoint.Registry.Run) runs one goroutine per endpoint, which
//     runs the endpoint's outbox.Relay and restarts it after a failure; Put and Delete stop
//     and start them while Run runs. Each Relay.Run runs a cursor writer and a log reader
//     and returns after both have exited; Registry.Run returns after every endpoint's
//     goroutine has exited and closed its sink. outbox.Pruner.Run starts none.
//   - The source registry (source.Registry.Run) runs one goroutine per source (and one for
//     $events while mappings read it), which runs the source under its runner.Runner; the
//     runner runs a goroutine per Order with messages waiting, and returns after they have
//     exited. Put and Delete stop and start them while Run runs. runner.Pruner.Run starts
//     none.
//   - The detector service (detector.Service.Run) runs one goroutine per detector, which
//     scores the change log from the detector's cursor; Put and Delete stop and start them
//     while Run runs, and Run returns after every one has exited. It runs once the graph
//     index is built, while this node holds the detectors' lease.
//   - A sink's client library may run goroutines of its own per connection (Kafka, NATS and
//     MQTT clients; the AMQP 0-9-1 sink watches its channel for closing), which end once the
//     sink's Close has closed its connections.
//   - net/http serves each connection on a goroutine of its own. Shutdown waits for the
//     requests in flight up to Config.ShutdownTimeout; after that Close cuts their
//     connections off but does not wait for handlers still running.
//   - The disk reserve (reserve.Reserve.Run) watches the disk while it is full, until space
//     returns; it starts none.
//   - The lease keeper (lease.Keeper.Run) keeps a goroutine per lease wanted: each endpoint's
//     relay, the history writer and each source but the http ones run (on the goroutines
//     above) only while this node holds their lease, so that among the nodes sharing a
//     PostgreSQL store each has one owner, and another node takes it over when its owner
//     dies (within lease.DefaultTTL plus a third). With the embedded store this node holds
//     every lease.
//   - On a store that nodes share, the follower (follower.Run) reloads the configuration
//     other nodes changed on its own goroutine; it starts none.
//   - Server.Run runs the HTTP server, the index build and follower with the job runner,
//     event delivery (the registry and the pruner, on one goroutine each), ingress (the
//     source registry and the message id pruner, likewise), the detectors, the lease keeper
//     and the disk reserve on goroutines of its own, waits for all of them, and only then closes the
//     lease table and the store.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/job"
	"github.com/twinflow/twinflow/internal/loopguard"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/reserve"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/throttle"
	"github.com/twinflow/twinflow/internal/twins"
	"github.com/twinflow/twinflow/internal/ui"
)

// Server is one twinflow instance: storage, twin service, graph index and API behind one listener.
//
// New acquires everything (the store, the listening socket); Run serves and, when it returns,
// has released all of it. Run must therefore be called exactly once for every Server New
// returns, even if only to be cancelled at once.
type Server struct {
	cfg    Config
	logger *slog.Logger
	// space is the data directory's disk reserve and full state, which the store and the
	// history store heed.
	space    *reserve.Reserve
	store    mainStore
	twins    *twins.Service
	delivery *delivery
	ingest   *ingest
	// follow reloads the configuration other nodes change; nil unless the store is shared.
	follow *follower
	// history is nil when data history is off.
	history *recorder
	// detectors scores twin properties for anomalies (package detector).
	detectors *detector.Service
	// graph is the graph index mappings read, once Run has built it.
	graph *lateGraph
	// snapshots saves the index and loads it at start; nil when snapshots are off.
	snapshots *snapshotter
	// auth authenticates requests and authorizes them by role; keys are its API keys.
	auth *auth.Authenticator
	keys *auth.Keys
	ln   net.Listener
	http *http.Server
	// streamsStop closes when the HTTP server begins to shut down, ending the event streams,
	// which would otherwise keep Shutdown waiting until its timeout.
	streamsStop chan struct{}
	scheme      string
	serviceID   string
	// leases give relays, the history writer and sources one owner among the nodes
	// sharing the store; leases.node is this process's NodeID.
	leases *leases
	// serving is true from the moment Run serves until shutdown begins.
	serving atomic.Bool
	// built is nil until Run has built the graph index and the API over it.
	built atomic.Pointer[built]
	// caughtUp latches once the index has applied the whole change log after the start.
	caughtUp atomic.Bool
}

// mainStore is the store the server keeps its state, change log, delivery, ingress, job and
// key state in: the embedded SQLite store (sqlite.Store) or PostgreSQL (postgres.Store).
type mainStore interface {
	store.Store
	store.Delivery
	store.Ingress
	store.Jobs
	store.Keys
	store.Detectors
	// Stats returns the counters of the write path.
	Stats() store.Stats
	// Failed is closed when the store failed for good and can take no more writes until the
	// process restarts; Err then says why.
	Failed() <-chan struct{}
	Err() error
}

// historyConfig returns the data history settings of cfg: with the state in PostgreSQL and no
// database of its own for history, history is kept in the store's database and schema, so
// that it is shared by the nodes like the state it records.
func historyConfig(cfg config.Config) config.History {
	h := cfg.History
	if h.DSN == "" && cfg.Store.DSN != "" {
		h.DSN = cfg.Store.DSN
		h.Schema = cmp.Or(h.Schema, cfg.Store.Schema, postgres.DefaultSchema)
	}
	return h
}

// openStore opens the store cfg.Store chooses: PostgreSQL when it names a database, else the
// embedded store in the data directory, which heeds space.
func openStore(cfg config.Config, space *reserve.Reserve, logger *slog.Logger) (mainStore, error) {
	if cfg.Store.DSN != "" {
		st, err := postgres.New(postgres.Config{
			DSN: cfg.Store.DSN, Schema: cfg.Store.Schema, MaxConns: cfg.Store.MaxConns,
			StatementTimeout: cfg.Store.StatementTimeout,
		}, logger)
		if err != nil {
			return nil, fmt.Errorf("open the PostgreSQL store: %w", err)
		}
		return st, nil
	}
	st, err := sqlite.Open(sqlite.Config{Dir: cfg.Server.DataDir, Space: space}, logger)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.Server.DataDir, err)
	}
	return st, nil
}

// built is what Run builds before the API can answer: the graph index, which reads every twin
// and relationship from the store, and the API over it.
type built struct {
	api   *api.API
	index *graph.Index
}

// New opens the store in cfg.Server.DataDir, builds the twin service, event delivery and
// ingress (creating or replacing the endpoints, routes, sources and mappings cfg declares),
// and binds cfg.Server.Listen. It logs the address bound as "twinflow listening on <URL>".
// The graph index and the API over it are built by Run, since the index reads every twin and
// relationship and so takes time in proportion to them. On error nothing is left open.
func New(cfg Config, logger *slog.Logger) (_ *Server, err error) {
	cfg.Config = cfg.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	s := &Server{cfg: cfg, logger: logger, scheme: "http"}

	var tlsConfig *tls.Config
	if cfg.Server.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCertFile, cfg.Server.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.scheme = "https"
	}

	s.ln, err = net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	defer func() {
		if err != nil {
			s.ln.Close()
		}
	}()
	s.serviceID = cfg.Server.ServiceID
	if s.serviceID == "" {
		s.serviceID = DefaultServiceID(s.ln.Addr())
	}
	loopback := isLoopback(s.ln.Addr())
	authRequired := cfg.Server.Auth.Mode == config.AuthRequired || (cfg.Server.Auth.Mode == config.AuthAuto && !loopback)
	if err := checkExposure(s.ln.Addr(), loopback, tlsConfig != nil, authRequired, cfg.Server.Insecure); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(cfg.Jobs.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create the jobs directory: %w", err)
	}
	if err := os.MkdirAll(cfg.Server.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create the data directory: %w", err)
	}
	s.space, err = reserve.New(reserve.Config{Dir: cfg.Server.DataDir, Size: cfg.Server.DiskReserveBytes}, logger)
	if err != nil {
		return nil, fmt.Errorf("set up the disk reserve in %s: %w", cfg.Server.DataDir, err)
	}
	if s.store, err = openStore(cfg.Config, s.space, logger); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.store.Close()
		}
	}()
	node, err := nodeID(s.serviceID)
	if err != nil {
		return nil, err
	}
	if s.leases, err = newLeases(context.Background(), cfg.Config, node, logger); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.leases.close()
		}
	}()
	gens := generationsOf(s.store) // before the configuration is loaded: later changes are followed
	// Telemetry is de-duplicated like the messages of sources, over the same window; the
	// ingress pruner forgets both.
	s.twins, err = twins.New(twins.Config{
		ServiceID: s.serviceID, TelemetryDedupWindow: cmp.Or(cfg.Ingress.DedupWindow, runner.DefaultDedupWindow),
	}, s.store, logger)
	if err != nil {
		return nil, fmt.Errorf("build the twin service: %w", err)
	}
	s.history, err = newRecorder(context.Background(), historyConfig(cfg.Config), cfg.Server.DataDir, s.space, s.serviceID, s.store.Log(), s.leases, logger)
	if err != nil {
		return nil, fmt.Errorf("set up data history: %w", err)
	}
	defer func() {
		if err != nil && s.history != nil {
			s.history.close()
		}
	}()
	consumers := []func() uint64{s.indexed}
	if s.snapshots = newSnapshotter(cfg.Index, cfg.Server.DataDir, logger); s.snapshots != nil {
		consumers = append(consumers, s.snapshots.held)
	}
	if s.history != nil {
		consumers = append(consumers, s.history.cursor)
	}
	policy, err := egressPolicy(cfg.Server, s.ln.Addr())
	if err != nil {
		return nil, err
	}
	// One guard checks routes, endpoints and sources, so none of them can feed twinflow's own
	// events back into a source.
	loops := loopguard.New(s.store, Kinds(), SourceKinds())
	s.delivery, err = newDelivery(context.Background(), cfg.Config, s.store, loops, consumers, policy, s.leases, logger)
	if err != nil {
		return nil, fmt.Errorf("set up event delivery: %w", err)
	}
	if s.history != nil {
		if err := s.history.register(s.delivery.metrics); err != nil {
			return nil, err
		}
	}
	s.graph = newLateGraph()
	s.ingest, err = newIngest(context.Background(), cfg, loops, s.store, s.twins, s.graph, s.delivery.metrics, policy, s.leases, logger)
	if err != nil {
		return nil, fmt.Errorf("set up ingress: %w", err)
	}
	var hist history.Store
	if s.history != nil {
		hist = s.history.store
	}
	s.detectors, err = newDetectors(context.Background(), cfg.Config, s.store, s.serviceID, s.graph, hist, s.delivery.metrics, logger)
	if err != nil {
		return nil, fmt.Errorf("set up detectors: %w", err)
	}
	s.follow = newFollower(s, gens)
	s.keys = auth.NewKeys(s.store, nil)
	s.auth, err = auth.New(auth.Config{
		Required: authRequired, OIDC: cfg.Server.Auth.OIDC.OIDCConfig(), WriteError: api.WriteError,
	}, s.keys, logger)
	if err != nil {
		return nil, fmt.Errorf("set up authentication: %w", err)
	}
	guard := api.GuardConfig{MaxHeaderBytes: cfg.Server.MaxHeaderBytes, BodyReadTimeout: cfg.Server.BodyReadTimeout}
	hosts := newHostCheck(cfg.Server.AllowedHosts, s.ln.Addr(), cfg.Server.Listen, s.serviceID)
	// A rebinding page cannot present the user's credentials: with authentication the Host
	// check has nothing left to stop.
	hosts.enforce = hosts.enforce && !authRequired
	explorer, err := ui.New()
	if err != nil {
		return nil, fmt.Errorf("set up the explorer: %w", err)
	}
	s.http = &http.Server{
		Handler:           s.handler(guard, hosts, explorer),
		MaxHeaderBytes:    guard.ServerMaxHeaderBytes(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	s.streamsStop = make(chan struct{})
	s.http.RegisterOnShutdown(sync.OnceFunc(func() { close(s.streamsStop) }))
	logger.Info("twinflow listening on "+s.URL(),
		slog.String("addr", s.ln.Addr().String()),
		slog.String("data_dir", cfg.Server.DataDir),
		slog.String("service_id", s.serviceID),
		slog.String("node_id", node))
	switch {
	case authRequired:
		logger.Info("authentication required", slog.String("oidc_issuer", cfg.Server.Auth.OIDC.Issuer))
	case cfg.Server.Auth.Mode == config.AuthOff:
		logger.Warn("authentication off: every request may do everything")
	default:
		logger.Info("authentication off while listening on loopback (--auth required turns it on)")
	}
	return s, nil
}

// isLoopback reports whether addr is a loopback address.
func isLoopback(addr net.Addr) bool {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkExposure refuses to serve on addr, an address other than loopback, without TLS or
// without authentication, unless insecure says to: anyone on the network could then read
// the traffic, credentials included, or do anything at all.
func checkExposure(addr net.Addr, loopback, tls, authRequired, insecure bool) error {
	if loopback || insecure {
		return nil
	}
	var errs []error
	if !tls {
		errs = append(errs, fmt.Errorf("refusing to listen on %s without TLS: it is not a loopback address, so anyone on the network "+
			"could read the requests, credentials included; give --tls-cert and --tls-key, or --insecure when TLS ends in front of "+
			"the server (a proxy) or the network is trusted", addr))
	}
	if !authRequired {
		errs = append(errs, fmt.Errorf("refusing to listen on %s without authentication: it is not a loopback address, so anyone "+
			"who can reach it could do anything; drop --auth off (auto requires authentication off loopback), or give --insecure "+
			"when the network is trusted", addr))
	}
	return errors.Join(errs...)
}

// egressPolicy returns the policy of what endpoints and sources may reach: srv's egress
// policy and file directories, with self, the address the server is bound to, denied unless
// the policy allows it.
func egressPolicy(srv config.Server, self net.Addr) (*netpolicy.Policy, error) {
	cfg := netpolicy.Config{
		DenyLoopback: srv.EgressPolicy.DenyLoopback, DenyPrivate: srv.EgressPolicy.DenyPrivate,
		Allow: srv.EgressPolicy.Allow, Deny: srv.EgressPolicy.Deny, AllowSelf: srv.EgressPolicy.AllowSelf,
		FileDirs: srv.FileDirs,
	}
	if tcp, ok := self.(*net.TCPAddr); ok {
		cfg.Self = []netip.AddrPort{tcp.AddrPort()}
	}
	p, err := netpolicy.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("server.egressPolicy: %w", err)
	}
	return p, nil
}

// Addr returns the address the server is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the base URL clients reach the server at, such as "https://127.0.0.1:8443".
func (s *Server) URL() string { return s.scheme + "://" + s.ln.Addr().String() }

// ServiceID returns the instance name events carry as their source.
func (s *Server) ServiceID() string { return s.serviceID }

// NodeID returns the id this process holds leases under, among the nodes sharing its store:
// the service id, '#' and a random suffix, so that it differs between nodes with the same
// service id (behind one load balancer) and between the lives of one node.
func (s *Server) NodeID() string { return s.leases.node }

// StoreStats returns the counters of the store's write path: transactions, the Updates they
// carried, fsyncs and their time. Benchmarks read it to report how well commits are grouped.
func (s *Server) StoreStats() store.Stats { return s.store.Stats() }

// HistoryStatus returns the data history writer's progress, read in-process so that a
// benchmark sampling it often costs the server nothing else; ok is false when history is
// off.
func (s *Server) HistoryStatus() (st history.Status, ok bool) {
	if s.history == nil {
		return history.Status{}, false
	}
	return s.history.writer.Status(), true
}

// Log returns the store's change log: a benchmark follows it to see when changes are
// committed.
func (s *Server) Log() store.Log { return s.store.Log() }

// Run serves requests until ctx ends. The health endpoints answer at once; meanwhile Run builds
// the graph index and the API over it, and until they are ready, API requests get 503
// ServiceUnavailable with Retry-After and /readyz 503. From then on the index follows the
// change log. When ctx ends, Run shuts down gracefully: it stops accepting connections, lets
// in-flight requests finish for up to Config.ShutdownTimeout, stops the follower and event
// delivery and closes the store after the last of them. It returns after every goroutine it
// started has exited (request handlers cut off at the timeout may still be running; the
// store refuses their calls once closed), with nil after a shutdown caused by ctx, or with
// the error that stopped serving, indexing or delivering.
//
// When the store fails for good (an fsync failed, see sqlite.Store.Failed), Run shuts down
// the same way and returns the failure: it does not go on serving a store whose state on
// disk is unknown, and a supervisor that restarts the process gets a store reopened from
// what the disk holds. A full disk stops nothing: while it lasts, /readyz is 503 and writes
// other than deletes are refused with 507 (see reserve.Reserve), and writing resumes once
// space is freed.
func (s *Server) Run(ctx context.Context) error {
	followCtx, stopFollowing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollowing()
	var (
		wg        sync.WaitGroup
		serveErr  = make(chan error, 1)
		followErr = make(chan error, 5) // the index follower, event delivery, ingress, history and detectors
	)
	s.serving.Store(true)
	// The relays, the history writer and the sources run while their leases are held.
	wg.Go(func() { _ = s.leases.run(followCtx) }) // returns nil once followCtx ends
	wg.Go(func() {
		var err error
		if s.http.TLSConfig != nil {
			err = s.http.ServeTLS(s.ln, "", "")
		} else {
			err = s.http.Serve(s.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	})
	wg.Go(func() {
		if err := s.buildAndFollow(followCtx); followCtx.Err() == nil {
			followErr <- err
		}
	})
	wg.Go(func() {
		if err := s.delivery.run(followCtx); err != nil {
			followErr <- fmt.Errorf("deliver events: %w", err)
		}
	})
	wg.Go(func() {
		// Mappings read the graph index: the sources run once it is built.
		select {
		case <-s.graph.ready:
		case <-followCtx.Done():
			return
		}
		if err := s.ingest.run(followCtx); err != nil {
			followErr <- fmt.Errorf("run sources: %w", err)
		}
	})
	if s.history != nil {
		wg.Go(func() {
			// History catches up with the change log in the background: it starts once the
			// index has caught up with the log, so that it does not slow the start down,
			// taking the CPUs and memory that loading or building the index and replaying
			// the log need.
			if !s.indexCaughtUp(followCtx) {
				return
			}
			if err := s.history.run(followCtx); err != nil {
				followErr <- err
			}
		})
	}
	wg.Go(func() {
		// The detectors' queries read the graph index: they score once it is built.
		select {
		case <-s.graph.ready:
		case <-followCtx.Done():
			return
		}
		if err := s.runDetectors(followCtx); err != nil {
			followErr <- err
		}
	})
	wg.Go(func() { _ = s.space.Run(followCtx) }) // returns nil once followCtx ends
	if s.follow != nil {
		wg.Go(func() { _ = s.follow.Run(followCtx) }) // returns nil once followCtx ends
	}

	var runErr error
	select {
	case <-ctx.Done():
		s.logger.Info("shutting down", slog.Duration("timeout", s.cfg.Server.ShutdownTimeout))
	case err := <-serveErr:
		runErr = fmt.Errorf("serve on %s: %w", s.ln.Addr(), err)
	case runErr = <-followErr:
	case <-s.store.Failed():
		// Which commits reached the disk is unknown; a new process reads back what did.
		runErr = fmt.Errorf("stop for a restart, since the store failed: %w", s.store.Err())
	}
	s.serving.Store(false)
	if runErr != nil {
		s.logger.Error("shutting down after a failure", slog.Any("error", runErr))
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		// Requests still running past the timeout are cut off; the store below still
		// closes cleanly because Close waits for pending writes.
		s.logger.Warn("in-flight requests did not finish in time", slog.Any("error", err))
		s.http.Close()
	}
	stopFollowing()
	wg.Wait()

	if s.history != nil {
		if err := s.history.close(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("close the history store: %w", err))
		}
	}
	s.leases.close()
	if err := s.store.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("close store: %w", err))
	}
	s.logger.Info("stopped")
	return runErr
}

// buildAndFollow builds the graph index, or loads it from its snapshot, and the API over it,
// makes the API answer, and then keeps the index following the change log, and its snapshot
// written in the background, until ctx ends. After a clean stop it writes the snapshot once
// more.
func (s *Server) buildAndFollow(ctx context.Context) (err error) {
	start := time.Now()
	idx, fromStore, err := s.openIndex(ctx)
	if err != nil {
		return err
	}
	if fromStore {
		// Building reads every stored document once and keeps a compressed copy: the garbage
		// it leaves is as large as the index, and the heap grew to hold both. One collection
		// now returns that memory to the system before the server reports ready, instead of
		// keeping the resident size near the build's peak until the heap happens to be
		// scavenged. Loading a snapshot leaves little garbage, and skips this collection of a
		// heap as large as the index.
		debug.FreeOSMemory()
	}
	jobs, err := job.New(job.Config{
		Dir: s.cfg.Jobs.Dir, SpoolDir: filepath.Join(s.cfg.Server.DataDir, "job-logs"), AllowedHosts: s.cfg.Jobs.AllowedHosts, ErrorCode: api.ErrorCode,
	}, s.store, s.twins, job.IndexGraph(idx), s.logger)
	if err != nil {
		return fmt.Errorf("build the job runner: %w", err)
	}
	acfg := api.Config{Index: idx, Delivery: s.delivery.api(), Jobs: jobs, Space: s.space, Ingress: s.ingest.api(), Auth: s.auth, Keys: s.keys,
		Events: &api.Events{Log: s.store.Log(), Stop: s.streamsStop}, Detectors: s.detectors}
	if limits := s.cfg.Limits.Throttle(); limits.On() {
		if acfg.Throttle, err = throttle.New(limits); err != nil {
			return err
		}
	}
	if s.history != nil {
		acfg.History = s.history.api(s.twins.Models)
	}
	a, err := api.New(acfg, s.twins, s.logger)
	if err != nil {
		return fmt.Errorf("build API: %w", err)
	}
	s.graph.set(idx)
	s.built.Store(&built{api: a, index: idx})
	s.logger.Info("API ready", slog.Duration("index_build", time.Since(start)), slog.String("jobs_dir", jobs.Dir()))

	// The index follows the change log and the runner runs jobs until ctx ends; the first
	// of them to fail stops the other.
	if s.snapshots != nil {
		defer func() {
			if err == nil {
				s.finalSnapshot(idx)
			}
		}()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var followErr, jobsErr error
	if s.snapshots != nil {
		wg.Go(func() { s.snapshots.run(ctx, idx) })
	}
	wg.Go(func() {
		// Run returns ctx's error once ctx ends; only an earlier return is a failure.
		if err := idx.Run(ctx); ctx.Err() == nil {
			followErr = fmt.Errorf("follow the change log: %w", err)
		}
		cancel()
	})
	wg.Go(func() {
		if jobsErr = jobs.Run(ctx); jobsErr != nil {
			jobsErr = fmt.Errorf("run jobs: %w", jobsErr)
		}
		cancel()
	})
	wg.Wait()
	return errors.Join(followErr, jobsErr)
}

// openIndex loads the graph index from its snapshot, or builds it from the store (fromStore)
// when snapshots are off or the snapshot is missing or cannot be used.
func (s *Server) openIndex(ctx context.Context) (idx *graph.Index, fromStore bool, err error) {
	if s.snapshots != nil {
		idx := s.snapshots.open(ctx, func(path string) (*graph.Index, error) {
			return graph.OpenSnapshot(ctx, path, graph.Config{}, s.store, s.twins.Models, s.logger)
		})
		if idx != nil {
			return idx, false, nil
		}
	}
	idx, err = graph.New(ctx, graph.Config{}, s.store, s.twins.Models, s.logger)
	if err != nil {
		return nil, false, fmt.Errorf("build graph index: %w", err)
	}
	return idx, true, nil
}

// finalSnapshot writes the snapshot of idx, whose follower has stopped, once it has applied
// the log as far as it reaches now; not after the store failed, whose durable state is
// unknown.
func (s *Server) finalSnapshot(idx *graph.Index) {
	select {
	case <-s.store.Failed():
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := idx.Sync(ctx); err != nil {
		s.logger.Warn("graph index: catch up before the last snapshot", slog.Any("err", err))
		return
	}
	s.snapshots.save(idx, "stop")
}

// indexCaughtUp waits until the graph index is built and has applied the change log as far
// as it reached when the index was built, and reports whether it has; false when ctx ends
// first.
func (s *Server) indexCaughtUp(ctx context.Context) bool {
	select {
	case <-s.graph.ready:
	case <-ctx.Done():
		return false
	}
	target := s.store.Log().Last()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.indexed() < target {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// indexed returns the Seq through which the graph index has applied the change log, 0 until
// Run has built it. The log's pruner keeps every record after it: the index follows the log
// from there (see graph.ErrLogGap).
func (s *Server) indexed() uint64 {
	if b := s.built.Load(); b != nil {
		return b.index.Applied()
	}
	return 0
}

// ready reports whether the server serves, its API is built, its sources have started (see
// source.Registry.Started) and its index has caught up with the change log once since the
// start. From then on the follower stays moments behind the log, and every query brings the
// index up to date before it reads, so a lag under load does not make the server unready.
// The disk and the store may still refuse writes: see unwritable.
func (s *Server) ready() bool {
	b := s.built.Load()
	if !s.serving.Load() || b == nil {
		return false
	}
	select {
	case <-s.ingest.sources.Started():
	default:
		return false
	}
	if s.caughtUp.Load() {
		return true
	}
	if b.index.Applied() >= s.store.Log().Last() {
		s.caughtUp.Store(true)
		return true
	}
	return false
}

// unwritable returns why the server cannot take writes now, "" when it can: the store failed
// (the server is stopping), or the disk is full.
func (s *Server) unwritable() string {
	select {
	case <-s.store.Failed():
		return "the store failed; the server is stopping"
	default:
	}
	if s.space.Full() {
		return "the disk is full; only reads and deletes are accepted until space is freed"
	}
	return ""
}
