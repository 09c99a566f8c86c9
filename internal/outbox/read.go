package outbox

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
)

// readBatch is what the reader hands the relay: the records after the previous batch up to
// through that the endpoint's routes match, each with its hop count raised for sending, or
// the error that stopped the reader. looped are the dead letters of the matched records
// whose hop count passed the limit, which are not in recs. A reader that publishes hands over
// a published batch with its ack, and a batch whose publishing failed with failed; it
// publishes nothing after a batch without an ack.
type readBatch struct {
	recs    []event.Record
	looped  []store.DeadLetter
	through uint64
	err     error
	ack     sink.Ack
	failed  error
}

// logReader is a running reader goroutine. Run owns it: it takes the batches in order and
// stops it before sending on its own.
type logReader struct {
	batches chan readBatch
	cancel  context.CancelFunc
	done    chan struct{}
	// inFlight counts the published events awaiting acknowledgement; room is signalled
	// when it drops (see settled).
	inFlight atomic.Int64
	room     chan struct{}
}

// stop stops the reader and waits for it; batches it read are dropped, and the
// acknowledgements of those it published are not waited for. Calling it again does nothing.
func (l *logReader) stop() {
	l.cancel()
	<-l.done
}

// startReader starts a goroutine, counted in wg, reading the log after from, ahead of the
// relay. It waits for new records without polling (Log.Read blocks) and stops when ctx ends,
// stop is called, or a read fails (after handing over the error). When the sink is a
// sink.Publisher, the reader publishes each batch before handing it over, while the events
// awaiting acknowledgement leave room for it, until a batch is not published (see publish),
// and hands over up to maxPublished batches ahead of Run; otherwise it reads one batch ahead.
func (r *Relay) startReader(ctx context.Context, wg *sync.WaitGroup, from uint64) *logReader {
	ctx, cancel := context.WithCancel(ctx)
	ahead := 1
	if r.pub != nil {
		ahead = maxPublished
	}
	l := &logReader{
		batches: make(chan readBatch, ahead), cancel: cancel, done: make(chan struct{}),
		room: make(chan struct{}, 1),
	}
	wg.Go(func() {
		defer close(l.done)
		for {
			b := r.read(ctx, from)
			if ctx.Err() != nil {
				return
			}
			if b.err == nil && r.pub != nil && len(b.recs) > 0 {
				b.ack, b.failed = r.publish(ctx, l, b.recs)
				if ctx.Err() != nil {
					return
				}
			}
			select {
			case l.batches <- b:
			case <-ctx.Done():
				return
			}
			// After an error, and after a batch that Run is to send itself, Run stops the
			// reader and starts another after the batch.
			if b.err != nil || (len(b.recs) > 0 && r.pub != nil && b.ack == nil) {
				return
			}
			from = b.through
		}
	})
	return l
}

// read returns the next batch after from: up to MaxBatch log records, waiting for one to be
// committed, of which it keeps those the endpoint's routes match, with their hop counts
// raised by one; those whose count then passes MaxHops become the batch's looped dead
// letters instead.
func (r *Relay) read(ctx context.Context, from uint64) readBatch {
	recs, err := r.st.Log().Read(ctx, from, r.cfg.MaxBatch)
	if err != nil {
		return readBatch{err: err}
	}
	b := readBatch{through: recs[len(recs)-1].Seq}
	// Filter in place: the slice is this reader's own.
	b.recs = recs[:0]
	for _, rec := range recs {
		if !r.match(&rec.Event) {
			continue
		}
		// rec is a copy; the log's own record keeps its count.
		if rec.Event.Hops++; rec.Event.Hops > r.cfg.MaxHops {
			b.looped = append(b.looped, r.deadLetter(rec, 0, fmt.Sprintf(
				"hop limit: the event came back to twinflow %d times, and at most %d are allowed; a route feeds its own source or the telemetry API, directly or through other systems",
				rec.Event.Hops-1, r.cfg.MaxHops)))
			continue
		}
		b.recs = append(b.recs, rec)
	}
	return b
}
