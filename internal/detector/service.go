package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// Defaults for Config's zero values.
const (
	// DefaultMembershipInterval is the longest a detector goes without asking its query which
	// twins it watches.
	DefaultMembershipInterval = 30 * time.Second
	// DefaultBatch is the most change log records a detector scores in one transaction.
	DefaultBatch = 256
	// DefaultCheckpointInterval is the longest a detector keeps what it learned of its series
	// only in memory. After a crash the detector scores again the change log records
	// committed since its last checkpoint: under bench patch's load (about 3,000 patches/s of
	// up to three numbers) 30 s are about 100,000 records, which a start reads back and scores
	// in seconds, a point costing about a microsecond (BenchmarkStreamPoint). A checkpoint
	// writes the state of every series scored since the one before, about 1.1 KiB each, so a
	// shorter interval writes more often the states of series that get a point every few
	// seconds, which was most of the cost of a detector watching many of them.
	DefaultCheckpointInterval = 30 * time.Second
)

// Config configures a Service.
type Config struct {
	// ServiceID is the source of the anomaly events (with "/detectors/<name>" appended).
	ServiceID string
	// MembershipInterval: see DefaultMembershipInterval.
	MembershipInterval time.Duration
	// Batch: see DefaultBatch.
	Batch int
	// CheckpointInterval: see DefaultCheckpointInterval.
	CheckpointInterval time.Duration
}

// Store is what a Service needs of the store: the change log, and detectors with their states
// and cursors.
type Store interface {
	store.Store
	store.Detectors
}

// Index answers the detectors' twin queries.
type Index interface {
	Read(ctx context.Context, fn func(*graph.Reader) error) error
}

// Detector is a stored detector with its definition and status.
type Detector struct {
	Name       string
	Definition Definition
	Created    time.Time
	Status     Status
}

// Status is what a detector has done since the server started.
type Status struct {
	// State is "running" while the detector scores the change log, "stopped" otherwise.
	State string
	// Twins is the number of twins its query selected when last asked.
	Twins int
	// Points and Anomalies count the points scored and the anomalies raised.
	Points, Anomalies uint64
	// RebuiltSeries counts the series whose models were rebuilt from data history (those
	// without a state to go on from: of a detector created over twins with history, or whose
	// stored state could not be read), and Rebuilt the points of their histories replayed to
	// rebuild them: the warm-up, which scores no point of the log.
	RebuiltSeries, Rebuilt uint64
	// LagRecords counts the change log records after the last one the detector scored (not
	// after its last checkpoint), and LagSeconds is the age of the oldest of them (0 when
	// none wait).
	LagRecords int64
	LagSeconds float64
	LastError  string
}

// ErrNoHistory is returned by Backtest when data history is off.
var ErrNoHistory = errors.New("data history is off")

// Service keeps the detectors: their definitions in the store, a scorer per detector that
// follows the change log while Run runs, and backtests over data history. It is safe for
// concurrent use.
type Service struct {
	cfg     Config
	st      Store
	index   Index
	hist    history.Store
	metrics *Metrics
	logger  *slog.Logger

	// mu guards the fields below, and serialises Put and Delete.
	mu      sync.Mutex
	runCtx  context.Context // nil until Run starts, and again once it stops
	scorers map[string]*scorer
	wg      sync.WaitGroup
}

// New returns the service of the detectors in st. hist is the data history store backtests
// read, nil when history is off; metrics may be nil.
func New(cfg Config, st Store, index Index, hist history.Store, metrics *Metrics, logger *slog.Logger) (*Service, error) {
	if cfg.MembershipInterval < 0 || cfg.Batch < 0 || cfg.CheckpointInterval < 0 {
		return nil, fmt.Errorf("detector config: negative membershipInterval %v, batch %d or checkpointInterval %v",
			cfg.MembershipInterval, cfg.Batch, cfg.CheckpointInterval)
	}
	if cfg.MembershipInterval == 0 {
		cfg.MembershipInterval = DefaultMembershipInterval
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, st: st, index: index, hist: hist, metrics: metrics, logger: logger, scorers: map[string]*scorer{}}, nil
}

// consumer names the log consumer cursor of detector name: the record its last checkpoint
// scored through, which holds back the log's pruning, as the detector scores again the
// records after it when it starts.
func consumer(name string) string { return "detector/" + name }

// eventsConsumer names the cursor of the record through which detector name has committed
// the anomaly events, at or after its consumer cursor: a start scores again the records up
// to it without raising their anomalies again. A name holds no '/', so it is no other
// detector's consumer.
func eventsConsumer(name string) string { return "detector/" + name + "/events" }

// cursors returns the consumer cursor of detector name and the cursor its events are
// committed through, which is the consumer cursor when it has none.
func cursors(r store.DetectorReader, name string) (checkpoint, events uint64, err error) {
	if checkpoint, err = r.ConsumerCursor(consumer(name)); err != nil {
		return 0, 0, err
	}
	events, err = r.ConsumerCursor(eventsConsumer(name))
	if errors.Is(err, store.ErrNotFound) {
		return checkpoint, checkpoint, nil
	}
	return checkpoint, max(checkpoint, events), err
}

// Put creates or replaces detector name from its JSON definition, and reports whether it
// created it. A new detector scores the changes committed after it; a replaced one goes on
// from where it was, keeping what it learned of each series unless its method changed. A
// series with nothing learned has its model rebuilt from data history when it is on (see
// the package documentation). On an invalid name or definition (ErrNameInvalid,
// ErrInvalid) nothing changes.
func (s *Service) Put(ctx context.Context, name string, body []byte) (created bool, err error) {
	if !ValidName(name) {
		return false, fmt.Errorf("%w: %q", ErrNameInvalid, name)
	}
	def, err := Parse(body)
	if err != nil {
		return false, err
	}
	config, err := json.Marshal(def)
	if err != nil {
		return false, fmt.Errorf("encode detector %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(name)
	err = s.st.UpdateDetectors(ctx, func(w store.DetectorWriter) error {
		old, err := w.Detector(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			created = true
			// Last read inside the write: no record can commit between it and the cursor.
			if err := w.SetConsumerCursor(consumer(name), s.st.Log().Last()); err != nil {
				return err
			}
			// An events cursor that a scorer of a detector of the same name left behind
			// (moved on another node while this one deleted it) is no longer of use.
			if err := w.DeleteConsumerCursor(eventsConsumer(name)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return w.PutDetector(store.Detector{Name: name, Config: config, Created: time.Now()})
		case err != nil:
			return err
		}
		var was Definition
		if err := json.Unmarshal(old.Config, &was); err != nil || was.Method != def.Method {
			if err := w.DeleteDetectorStates(name); err != nil {
				return err
			}
		}
		return w.PutDetector(store.Detector{Name: name, Config: config, Created: old.Created})
	})
	if err != nil {
		// The stored detector, if any, goes on as it was.
		s.startStored(name)
		return false, fmt.Errorf("put detector %q: %w", name, err)
	}
	s.start(name, def)
	return created, nil
}

// Delete deletes detector name, its states and its cursors; store.ErrNotFound when there is
// none.
func (s *Service) Delete(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(name)
	err := s.st.UpdateDetectors(ctx, func(w store.DetectorWriter) error {
		if err := w.DeleteDetector(name); err != nil {
			return err
		}
		for _, c := range []string{consumer(name), eventsConsumer(name)} {
			if err := w.DeleteConsumerCursor(c); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.startStored(name)
		return fmt.Errorf("delete detector %q: %w", name, err)
	}
	s.metrics.forget(name)
	return nil
}

// Get returns detector name with its status; store.ErrNotFound when there is none.
func (s *Service) Get(ctx context.Context, name string) (Detector, error) {
	var d store.Detector
	err := s.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
		var err error
		d, err = r.Detector(name)
		return err
	})
	if err != nil {
		return Detector{}, err
	}
	return s.describe(ctx, d)
}

// List returns up to limit detectors ordered by name, starting after the given name, with
// their status; a limit of 0 or less means all of them.
func (s *Service) List(ctx context.Context, after string, limit int) ([]Detector, error) {
	var ds []store.Detector
	err := s.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
		var err error
		ds, err = r.Detectors(after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Detector, 0, len(ds))
	for _, d := range ds {
		det, err := s.describe(ctx, d)
		if err != nil {
			return nil, err
		}
		out = append(out, det)
	}
	return out, nil
}

// describe decodes a stored detector and adds its status.
func (s *Service) describe(ctx context.Context, d store.Detector) (Detector, error) {
	var def Definition
	if err := json.Unmarshal(d.Config, &def); err != nil {
		return Detector{}, fmt.Errorf("decode detector %q: %w", d.Name, err)
	}
	out := Detector{Name: d.Name, Definition: def, Created: d.Created, Status: Status{State: "stopped"}}
	s.mu.Lock()
	sc := s.scorers[d.Name]
	s.mu.Unlock()
	var cursor uint64
	if sc != nil {
		out.Status = sc.status()
		cursor = sc.cursor.Load()
	}
	if cursor == 0 {
		// Not running here, or not yet started: the stored cursors tell. The records up to
		// the later of them are scored, the events cursor moving on at least every second
		// while the detector scores.
		err := s.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
			var err error
			_, cursor, err = cursors(r, d.Name)
			return err
		})
		if err != nil {
			return Detector{}, fmt.Errorf("read the cursor of detector %q: %w", d.Name, err)
		}
	}
	if last := s.st.Log().Last(); last > cursor {
		out.Status.LagRecords = int64(last - cursor)
		// The oldest record waiting is there: Read does not wait.
		if recs, err := s.st.Log().Read(ctx, cursor, 1); err == nil && len(recs) == 1 {
			if t, err := time.Parse(time.RFC3339Nano, recs[0].Event.Time); err == nil {
				out.Status.LagSeconds = max(0, time.Since(t).Seconds())
			}
		}
	}
	return out, nil
}

// Run runs a scorer for every stored detector until ctx ends, and returns once every scorer
// has stopped. Put and Delete start and stop scorers at once; the detectors that another node
// sharing the store created, changed or deleted are followed within
// Config.MembershipInterval. While the store cannot be read, Run tries again every second.
func (s *Service) Run(ctx context.Context) {
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for name := range s.scorers {
			s.stop(name)
		}
		s.runCtx = nil
		s.mu.Unlock()
		s.wg.Wait()
	}()
	var wait time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = s.cfg.MembershipInterval
		if err := s.follow(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("read the detectors", slog.Any("err", err))
			wait = time.Second
		}
	}
}

// follow starts, restarts and stops scorers so that they score the stored detectors as
// stored.
func (s *Service) follow(ctx context.Context) error {
	// The detectors are read under s.mu, as Put and Delete write them: a scorer that a Put
	// starts meanwhile is not taken for that of a deleted detector and stopped.
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []store.Detector
	err := s.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
		var err error
		ds, err = r.Detectors("", 0)
		return err
	})
	if err != nil {
		return err
	}
	stored := make(map[string]bool, len(ds))
	for _, d := range ds {
		stored[d.Name] = true
		if sc := s.scorers[d.Name]; sc != nil && sc.config == string(d.Config) {
			continue
		}
		var def Definition
		if err := json.Unmarshal(d.Config, &def); err != nil {
			s.logger.Error("detector "+d.Name+" not started", slog.Any("err", err))
			continue
		}
		s.stop(d.Name)
		s.start(d.Name, def)
	}
	for name := range s.scorers {
		if !stored[name] {
			s.stop(name)
			s.metrics.forget(name)
		}
	}
	return nil
}

// start starts the scorer of detector name while Run runs. s.mu must be held.
func (s *Service) start(name string, def Definition) {
	if s.runCtx == nil {
		return
	}
	sel, err := prepare(def.Twins)
	if err != nil {
		s.logger.Error("detector "+name+" not started", slog.Any("err", err))
		return
	}
	config, err := json.Marshal(def)
	if err != nil {
		s.logger.Error("detector "+name+" not started", slog.Any("err", err))
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	sc := &scorer{svc: s, name: name, def: def, config: string(config), sel: sel, cancel: cancel, done: make(chan struct{})}
	s.scorers[name] = sc
	s.wg.Go(func() {
		defer close(sc.done)
		sc.run(ctx)
	})
}

// startStored starts the scorer of detector name as the store has it, if it has it. s.mu
// must be held.
func (s *Service) startStored(name string) {
	if s.runCtx == nil {
		return
	}
	var d store.Detector
	err := s.st.ViewDetectors(s.runCtx, func(r store.DetectorReader) error {
		var err error
		d, err = r.Detector(name)
		return err
	})
	if err != nil {
		return
	}
	var def Definition
	if json.Unmarshal(d.Config, &def) == nil {
		s.start(name, def)
	}
}

// stop stops the scorer of detector name and waits for it; its last batch is committed or
// not at all. s.mu must be held.
func (s *Service) stop(name string) {
	sc := s.scorers[name]
	if sc == nil {
		return
	}
	delete(s.scorers, name)
	sc.cancel()
	<-sc.done
}
