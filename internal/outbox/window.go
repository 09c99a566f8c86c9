package outbox

import (
	"cmp"
	"context"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
)

// The publish window of a sink that is a sink.Publisher. The reader publishes each batch as
// it reads it and queues it for Run, which waits for the acknowledgements in queue order:
//
//   - publishWindow bounds the events awaiting acknowledgement, in batches of MaxBatch: with
//     full batches up to publishWindow of them are in flight, so the round trip of one
//     overlaps the sending of the next. A batch is published once the events in flight
//     leave room for it, or when none are in flight.
//   - maxPublished is the length of the queue between the reader and Run, and so bounds the
//     published batches awaiting acknowledgement when they are small: at most maxPublished
//     queued, the one Run waits for and the one the reader is queueing.
//
// When an acknowledgement fails, Run stops the reader, abandoning the batches published after
// the failed one (their acknowledgements are not waited for), sends the failed batch itself
// (see Relay.send) and starts a reader after it, which publishes the abandoned ones again.
const (
	maxPublished  = 64
	publishWindow = 4
)

// Window returns the most published events a relay with the given Config.MaxBatch (0: the
// default) keeps awaiting acknowledgement from a sink.Publisher. A Publisher that bounds its
// unacknowledged publishes itself must allow at least that many, or it stalls the relay's
// pipelining.
func Window(maxBatch int) int {
	return publishWindow * cmp.Or(maxBatch, DefaultMaxBatch)
}

// publish publishes recs once the events awaiting acknowledgement leave room for them, and
// returns their Ack. It returns no Ack, leaving recs to Run, when some of them expired (Run
// dead-letters them), when publishing fails (with the failure) or when ctx ends. Only the
// reader goroutine calls it.
func (r *Relay) publish(ctx context.Context, l *logReader, recs []event.Record) (sink.Ack, error) {
	if n, err := r.expired(ctx, recs, time.Time{}); n > 0 || err != nil {
		return nil, nil
	}
	for n, window := int64(len(recs)), int64(publishWindow*r.cfg.MaxBatch); l.inFlight.Load() > 0 && l.inFlight.Load()+n > window; {
		select {
		case <-l.room:
		case <-ctx.Done():
			return nil, nil
		}
	}
	ack, err := r.pub.Publish(ctx, appendEvents(make([]event.Event, 0, len(recs)), recs))
	if err != nil {
		return nil, err
	}
	l.inFlight.Add(int64(len(recs)))
	return ack, nil
}

// awaitAck waits for the acknowledgement of the published batch b and returns nil once the
// sink accepted it, making room in l's window; otherwise it returns the failure (ctx's error
// when ctx ended), and the batch stays in the window until Run stops l. Only Run calls it,
// for the batches in the order the reader queued them.
func (r *Relay) awaitAck(ctx context.Context, l *logReader, b readBatch) error {
	if err := b.ack(ctx); err != nil {
		return err
	}
	l.settled(len(b.recs))
	r.accepted(len(b.recs))
	return nil
}

// settled records that n published events were acknowledged.
func (l *logReader) settled(n int) {
	l.inFlight.Add(-int64(n))
	select {
	case l.room <- struct{}{}:
	default:
	}
}
