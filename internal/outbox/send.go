package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
)

// errInterrupted abandons a batch because a replay asks to start elsewhere.
var errInterrupted = errors.New("interrupted by a replay")

// send delivers recs with sink.Sink.Send, retrying as configured, and returns the dead
// letters of the events it gave up on. since, when not zero, replaces the events' commit
// times as the start of their TTL. failed, when not nil, is how a first attempt already
// failed: the acknowledgement or the publishing of recs as a published batch. It fails only
// when ctx ends (with ctx's error) or a replay interrupts it (errInterrupted). Only Run's
// goroutine calls it, with no reader publishing.
func (r *Relay) send(ctx context.Context, recs []event.Record, since time.Time, failed error) ([]store.DeadLetter, error) {
	var dead []store.DeadLetter
	events := make([]event.Event, 0, len(recs))
	for attempts := 0; ; {
		err := failed
		failed = nil
		if err == nil {
			expired, dateErr := r.expired(ctx, recs, since)
			if dateErr != nil {
				return nil, dateErr
			}
			for _, rec := range recs[:expired] {
				dead = append(dead, r.deadLetter(rec, attempts, fmt.Sprintf("expired: not delivered within the TTL of %v", r.cfg.TTL)))
			}
			if recs = recs[expired:]; len(recs) == 0 {
				return dead, nil
			}
			if err = r.sink.Send(ctx, appendEvents(events[:0], recs)); err == nil {
				r.accepted(len(recs))
				return dead, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		attempts++
		r.sendFailed(attempts, err)
		given, gaveUp, sendErr := r.giveUp(ctx, recs, since, attempts, err)
		switch {
		case sendErr != nil:
			return nil, sendErr
		case gaveUp:
			return append(dead, given...), nil
		}
		delay := r.backoff(attempts, err)
		r.logger.Debug("send failed; retrying", slog.Int("attempt", attempts), slog.Duration("after", delay), slog.Any("err", err))
		if err := r.sleep(ctx, delay); err != nil {
			return nil, err
		}
		r.metrics.retried()
	}
}

// giveUp reports whether send stops retrying recs after their attempts-th failure, err, and
// returns the dead letters of the events it gives up on: the event a permanent rejection names
// (a batch of several events is sent again event by event, as send does, to find the
// rejected ones), or every event once MaxAttempts is reached. It fails as send does.
func (r *Relay) giveUp(ctx context.Context, recs []event.Record, since time.Time, attempts int, err error) ([]store.DeadLetter, bool, error) {
	switch {
	case sink.IsPermanent(err) && len(recs) > 1:
		r.logger.Warn("batch rejected; sending its events one by one", slog.Int("events", len(recs)), slog.Any("err", err))
		var dead []store.DeadLetter
		for _, rec := range recs {
			d, err := r.send(ctx, []event.Record{rec}, since, nil)
			if err != nil {
				return nil, true, err
			}
			dead = append(dead, d...)
		}
		return dead, true, nil
	case sink.IsPermanent(err):
		r.logger.Warn("event rejected", slog.String("event_id", recs[0].Event.ID), slog.Any("err", err))
		return []store.DeadLetter{r.deadLetter(recs[0], attempts, "rejected: "+err.Error())}, true, nil
	case r.cfg.MaxAttempts > 0 && attempts >= r.cfg.MaxAttempts:
		r.logger.Warn("giving up on events", slog.Int("events", len(recs)), slog.Int("attempts", attempts), slog.Any("err", err))
		dead := make([]store.DeadLetter, 0, len(recs))
		for _, rec := range recs {
			dead = append(dead, r.deadLetter(rec, attempts, fmt.Sprintf("gave up after %d attempts: %v", attempts, err)))
		}
		return dead, true, nil
	}
	return nil, false, nil
}

// appendEvents appends the events of recs to dst.
func appendEvents(dst []event.Event, recs []event.Record) []event.Event {
	for _, rec := range recs {
		dst = append(dst, rec.Event)
	}
	return dst
}

// accepted records that the sink accepted n events: the relay is delivering again.
func (r *Relay) accepted(n int) {
	r.metrics.delivered(n)
	r.m(func(s *Status) { s.State, s.Attempts = StateDelivering, 0 })
}

// sendFailed records the attempts-th failure, err, of the batch in flight: the relay is
// retrying.
func (r *Relay) sendFailed(attempts int, err error) {
	r.metrics.failed()
	now := r.cfg.Now()
	r.m(func(s *Status) {
		s.State, s.Attempts, s.LastError, s.LastErrorTime = StateRetrying, attempts, err.Error(), now
	})
}

// expired returns how many of recs, from the first, are past their TTL. Records are in commit
// order, so the expired ones are a prefix. since, when not zero, is the start of every
// record's TTL instead of its commit time. It fails only when ctx ends: a record that cannot
// be dated is logged and counted as not expired.
func (r *Relay) expired(ctx context.Context, recs []event.Record, since time.Time) (int, error) {
	now := r.cfg.Now()
	if !since.IsZero() {
		if now.Sub(since) >= r.cfg.TTL {
			return len(recs), nil
		}
		return 0, nil
	}
	// Every record after a dated one was committed at or after its time, so none of them
	// expires before it does: dating once per TTL suffices while the relay moves forward.
	if d := r.dated; !d.at.IsZero() && recs[0].Seq >= d.seq && now.Sub(d.at) < r.cfg.TTL {
		return 0, nil
	}
	n := 0
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		for _, rec := range recs {
			at, err := er.LogTime(rec.Seq)
			if err != nil {
				return fmt.Errorf("date record %d: %w", rec.Seq, err)
			}
			if now.Sub(at) < r.cfg.TTL {
				r.dated.seq, r.dated.at = rec.Seq, at
				return nil
			}
			n++
		}
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		// Without a date nothing more is known to be expired; delivery goes on.
		r.logger.Warn("cannot date events for their TTL", slog.Any("err", err))
	}
	return n, nil
}

// deadLetter returns the dead letter of rec, given up on after attempts failed sends.
func (r *Relay) deadLetter(rec event.Record, attempts int, reason string) store.DeadLetter {
	r.metrics.deadLettered()
	return store.DeadLetter{
		Endpoint: r.cfg.Endpoint, Seq: rec.Seq, Event: rec.Event,
		Reason: reason, Attempts: attempts, Time: r.cfg.Now(),
	}
}

// addDeadLetters stores dead in w and sets each one's ID to the id it was stored under.
func addDeadLetters(w store.DeliveryWriter, dead []store.DeadLetter) error {
	for i := range dead {
		id, err := w.AddDeadLetter(dead[i])
		if err != nil {
			return err
		}
		dead[i].ID = id
	}
	return nil
}

// backoff returns the wait after the attempts-th failure: what a RetryAfterError asks for,
// otherwise an exponential backoff with jitter.
func (r *Relay) backoff(attempts int, err error) time.Duration {
	if ra, ok := errors.AsType[*sink.RetryAfterError](err); ok && ra.After > 0 {
		return ra.After
	}
	d := r.cfg.MinBackoff
	for i := 1; i < attempts && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d, returning early with ctx's error, or with errInterrupted when a replay
// is asked for. A redrive does not cut the wait short: it waits for the batch in flight.
func (r *Relay) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.signal:
			r.mu.Lock()
			replay := r.rewind != nil
			r.mu.Unlock()
			if replay {
				return errInterrupted
			}
			// A redrive stays pending; the relay takes it up after the batch in flight.
		}
	}
}

// writeFiles writes dead letters as files when Config.DeadLetterDir is set. A file that
// cannot be written is logged: the dead letter is stored already.
func (r *Relay) writeFiles(dead []store.DeadLetter) {
	if r.cfg.DeadLetterDir == "" {
		return
	}
	for _, d := range dead {
		t := d.Time.UTC()
		dir := filepath.Join(r.cfg.DeadLetterDir, r.cfg.Endpoint,
			fmt.Sprintf("%04d", t.Year()), fmt.Sprintf("%02d", t.Month()), fmt.Sprintf("%02d", t.Day()), fmt.Sprintf("%02d", t.Hour()))
		body, err := json.Marshal(d.Event)
		if err == nil {
			err = os.MkdirAll(dir, 0o750)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(d.Event.ID)+".json"), body, 0o640)
		}
		if err != nil {
			r.logger.Error("cannot write dead letter file", slog.String("event_id", d.Event.ID), slog.Any("err", err))
		}
	}
}
