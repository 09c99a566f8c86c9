package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// rowSink imports the Twins or the Relationships section. Lines go in batches to prepare
// workers, which validate and encode them through the twin service; the committer takes the
// prepared batches in order, gathers their rows into chunks of importer.chunk and writes each
// chunk in a transaction that also records the job's progress, gathering the next chunk
// while one is written.
//
// One chunk at a time is handed to the store: the API's writes that queue at the store's
// writer while a chunk is written go into the same group commit, and the next chunk queues
// behind them, so that they wait for at most one chunk. And the workers leave a CPU to the
// store's writer and the API's requests.
//
//	add ──batch──▶ workers ──prepared──┐
//	    └─────────── ordered ──────────┴─▶ committer ──chunks──▶ store (one at a time)
type rowSink struct {
	ctx     context.Context
	im      *importer
	section string
	// tr is the job's trace, for the workers.
	tr      twins.Trace
	cur     *batch
	work    chan *batch
	ordered chan *batch
	workers sync.WaitGroup
	// committed is closed when the committer has done with every batch.
	committed chan struct{}
}

// batch is a run of lines on their way through a rowSink.
type batch struct {
	lines   []Line // each with a copy of its data
	twins   []twins.ImportTwin
	rels    []twins.ImportRelationship
	errs    []error
	prepped chan struct{}
}

func newRowSink(ctx context.Context, im *importer, section string) *rowSink {
	n := max(min(runtime.GOMAXPROCS(0), runtime.NumCPU()-1), 1)
	s := &rowSink{
		ctx: ctx, im: im, section: section, tr: im.job.trace(),
		work: make(chan *batch, n), ordered: make(chan *batch, 4*n), committed: make(chan struct{}),
	}
	for range n {
		s.workers.Go(func() {
			for b := range s.work {
				s.prepare(b)
				close(b.prepped)
			}
		})
	}
	go func() {
		defer close(s.committed)
		(&committer{sink: s}).run()
	}()
	return s
}

func (s *rowSink) add(l Line) {
	if s.cur == nil {
		s.cur = &batch{lines: make([]Line, 0, batchLines), prepped: make(chan struct{})}
	}
	l.Data = bytes.Clone(l.Data)
	s.cur.lines = append(s.cur.lines, l)
	if len(s.cur.lines) == batchLines {
		s.send()
	}
}

// send hands the current batch to the workers and the committer.
func (s *rowSink) send() {
	b := s.cur
	s.cur = nil
	s.ordered <- b
	s.work <- b
}

func (s *rowSink) finish() {
	if s.cur != nil {
		s.send()
	}
	close(s.work)
	close(s.ordered)
	s.workers.Wait()
	<-s.committed
}

// prepare validates and encodes the lines of b. It runs on a worker.
func (s *rowSink) prepare(b *batch) {
	b.errs = make([]error, len(b.lines))
	if err := s.ctx.Err(); err != nil {
		for i := range b.errs {
			b.errs[i] = err
		}
		return
	}
	im := s.im
	now := twin.FormatTime(im.r.cfg.Now())
	tr := s.tr
	switch s.section {
	case SectionTwins:
		b.twins = make([]twins.ImportTwin, len(b.lines))
		for i, l := range b.lines {
			if !l.TooLong {
				b.twins[i], b.errs[i] = im.r.svc.PrepareImportTwin(l.Data, now, tr)
			}
		}
	case SectionRelationships:
		data := make([][]byte, len(b.lines))
		for i, l := range b.lines {
			data[i] = l.Data
		}
		err := im.r.graph.ViewTwins(s.ctx, func(v twins.TwinView) error {
			b.rels, b.errs = im.r.svc.PrepareImportRelationships(data, pendingView{v, im.pending}, now, tr)
			return nil
		})
		if err != nil {
			for i := range b.errs {
				b.errs[i] = err
			}
		}
	}
	for i, l := range b.lines {
		if l.TooLong {
			b.errs[i] = twin.LimitExceeded(fmt.Sprintf("The line is longer than %d bytes.", MaxLineBytes))
		}
	}
}

// pendingView is a TwinView that also knows the twins checked, but not written, after an
// import's first failure.
type pendingView struct {
	twins.TwinView
	pending map[string]string
}

func (v pendingView) TwinModel(id string) (string, bool) {
	if m, ok := v.pending[id]; ok {
		return m, true
	}
	return v.TwinView.TwinModel(id)
}

// committer takes a rowSink's prepared batches in order and writes their rows.
type committer struct {
	sink *rowSink
	// rows and at are the chunk being gathered: the prepared rows and the line of each.
	twins []twins.ImportTwin
	rels  []twins.ImportRelationship
	at    []Position
	// inflight is the chunk being written, whose transaction may not have returned yet.
	inflight *write
}

// write is one chunk's transaction; done delivers its outcome once it returned.
type write struct {
	twins []twins.ImportTwin
	rels  []twins.ImportRelationship
	at    []Position
	done  chan writeResult
}

// writeResult is what a chunk's transaction did: n rows written, and the error of the row
// after them when they are not all (lineErr), or the transaction's error; job is the job
// as the transaction left it; took is how long its function held the writer.
type writeResult struct {
	n       int
	lineErr error
	err     error
	job     Job
	took    time.Duration
}

func (c *committer) run() {
	s := c.sink
	im := s.im
	for b := range s.ordered {
		if im.stopped() != nil || s.ctx.Err() != nil {
			continue // drain, so that add never blocks
		}
		<-b.prepped
		for i, l := range b.lines {
			if err := b.errs[i]; err != nil {
				if s.ctx.Err() != nil {
					break
				}
				if !im.failed {
					c.flush()
					c.drain()
				}
				var te *twin.Error
				if !errors.As(err, &te) {
					im.setStop(err) // the graph index could not be read
					break
				}
				im.lineFailed(s.section, l.At.Line, err)
				continue
			}
			if im.failed {
				c.remember(b, i)
				continue
			}
			c.at = append(c.at, l.At)
			if b.twins != nil {
				c.twins = append(c.twins, b.twins[i])
			} else {
				c.rels = append(c.rels, b.rels[i])
			}
			if len(c.at) >= im.chunk {
				c.flush()
			}
		}
	}
	c.flush()
	c.drain()
}

// remember records that row i of b was checked, after a failure.
func (c *committer) remember(b *batch, i int) {
	if b.twins != nil {
		c.sink.im.remember(b.twins[i])
	}
}

// flush writes the gathered chunk, once the chunk before it was written.
func (c *committer) flush() {
	c.drain()
	im := c.sink.im
	if len(c.at) == 0 || im.failed || im.stopped() != nil || c.sink.ctx.Err() != nil {
		if im.failed {
			for i := range c.twins {
				im.remember(c.twins[i])
			}
		}
		c.twins, c.rels, c.at = nil, nil, nil
		return
	}
	if err := im.log.sync(); err != nil {
		im.setStop(err)
		return
	}
	w := &write{twins: c.twins, rels: c.rels, at: c.at, done: make(chan writeResult, 1)}
	c.twins, c.rels, c.at = nil, nil, nil
	go c.commit(w, im.job.At, im.log.size)
	c.inflight = w
}

// drain waits for the chunk in flight and takes in its outcome.
func (c *committer) drain() {
	w := c.inflight
	if w == nil {
		return
	}
	c.inflight = nil
	res := <-w.done
	im := c.sink.im
	if res.err != nil {
		if c.sink.ctx.Err() == nil {
			im.setStop(res.err)
		}
		return
	}
	*im.job = res.job
	im.adapt(res.n, res.took)
	if res.lineErr == nil {
		return
	}
	im.lineFailed(c.sink.section, w.at[res.n].Line, res.lineErr)
	// The failing row is neither written nor remembered; those after it were checked.
	for i := res.n + 1; i < len(w.twins); i++ {
		im.remember(w.twins[i])
	}
}

// commit runs w's transaction: it checks that the job is at expect, writes the rows and
// records the job's new position, its progress and the size of its output log. It runs on a
// goroutine of its own.
func (c *committer) commit(w *write, expect Position, logBytes int64) {
	im := c.sink.im
	var res writeResult
	res.err = im.r.st.UpdateJobs(c.sink.ctx, func(tx store.JobWriter) error {
		start := time.Now()
		defer func() { res.took = time.Since(start) }()
		cur, err := get(tx, KindImport, im.job.ID)
		if err != nil {
			return err
		}
		if cur.At != expect {
			// Only this job moves its position, one transaction at a time.
			return fmt.Errorf("the job is at %+v, not %+v as the import expects", cur.At, expect)
		}
		var n int
		if w.twins != nil {
			n, err = im.r.svc.WriteImportTwins(tx, w.twins)
			cur.Progress.Twins += n
		} else {
			n, err = im.r.svc.WriteImportRelationships(tx, w.rels)
			cur.Progress.Relationships += n
		}
		var te *twin.Error
		if err != nil && !errors.As(err, &te) {
			return err
		}
		res.n, res.lineErr = n, err
		if n > 0 {
			cur.At = w.at[n-1]
		}
		cur.LogBytes, cur.Progress.Section = logBytes, cur.At.Section
		cur.touch(im.r.cfg.Now().UTC())
		res.job = cur
		return put(tx, &cur)
	})
	w.done <- res
}

// adapt sizes the next chunks so that each holds the store's writer for about ChunkTime,
// given that the last one wrote n rows in took.
func (im *importer) adapt(n int, took time.Duration) {
	if n < minChunk/2 || took <= 0 {
		return
	}
	target := int(float64(n) * float64(im.r.cfg.ChunkTime) / float64(took))
	// Move halfway, so that one slow transaction does not halve the chunks at once.
	im.chunk = min(max((im.chunk+target)/2, minChunk), maxChunk)
}
