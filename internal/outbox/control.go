package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// Rewind asks the relay to deliver again every record after seq (replay), or to skip ahead
// to seq. It takes effect between batches, abandoning a batch still being retried; the new
// cursor is stored before delivery resumes. A relay that is not running takes it up when Run
// next runs.
func (r *Relay) Rewind(seq uint64) {
	r.mu.Lock()
	r.rewind = &seq
	r.mu.Unlock()
	r.notify()
}

// Redrive asks the relay to send the dead letter id again, between batches. Once the sink
// accepts it the dead letter is deleted; if it fails again it is dead-lettered anew (a new
// id) with the attempts of both tries. A relay that is not running takes it up when Run next
// runs.
func (r *Relay) Redrive(id uint64) {
	r.mu.Lock()
	r.redrive = append(r.redrive, id)
	r.mu.Unlock()
	r.notify()
}

// notify wakes the relay to take up a replay or redrive.
func (r *Relay) notify() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// controlPending reports whether a replay or redrive waits for control.
func (r *Relay) controlPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rewind != nil || len(r.redrive) > 0
}

// control applies a pending rewind to *cursor and works off pending redrives. The reader must
// be stopped. A replay asked for during a redrive interrupts it; the redrives left wait for
// the next control, which Run calls at once: it calls control until nothing is pending.
func (r *Relay) control(ctx context.Context, cw *cursorWriter, cursor *uint64) error {
	r.mu.Lock()
	rewind, redrive := r.rewind, r.redrive
	r.rewind, r.redrive = nil, nil
	r.mu.Unlock()
	if rewind != nil {
		if err := cw.set(ctx, *rewind); err != nil {
			return err
		}
		r.logger.Info("replaying the log", slog.Uint64("from", *rewind+1), slog.Uint64("was_at", *cursor))
		*cursor = *rewind
		// Whatever was being retried is abandoned.
		r.m(func(s *Status) { s.Cursor, s.State, s.Attempts = *rewind, StateDelivering, 0 })
	}
	for i, id := range redrive {
		if err := r.redriveOne(ctx, id); err != nil {
			if errors.Is(err, errInterrupted) {
				// A replay came in; keep the remaining redrives for after it.
				r.mu.Lock()
				r.redrive = append(redrive[i:], r.redrive...)
				r.mu.Unlock()
				return nil
			}
			return err
		}
	}
	return nil
}

// redriveOne sends dead letter id again, with its expiry counted from now, and settles it in
// one transaction: deletes it, and stores the dead letter of a failed send.
func (r *Relay) redriveOne(ctx context.Context, id uint64) error {
	var dl store.DeadLetter
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		dl, err = er.DeadLetter(r.cfg.Endpoint, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted or redriven meanwhile
	}
	if err != nil {
		return fmt.Errorf("load dead letter %d: %w", id, err)
	}
	dead, err := r.send(ctx, []event.Record{{Seq: dl.Seq, Event: dl.Event}}, r.cfg.Now(), nil)
	if err != nil {
		return err
	}
	// Done with the dead letter, whatever became of it: nothing is being retried.
	r.m(func(s *Status) { s.State, s.Attempts = StateDelivering, 0 })
	for i := range dead {
		dead[i].Attempts += dl.Attempts
	}
	err = r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		if err := w.DeleteDeadLetter(r.cfg.Endpoint, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return addDeadLetters(w, dead)
	})
	if err != nil {
		return fmt.Errorf("settle redrive of dead letter %d: %w", id, err)
	}
	r.writeFiles(dead)
	if len(dead) == 0 {
		r.logger.Info("redriven dead letter delivered", slog.Uint64("dead_letter", id), slog.String("event_id", dl.Event.ID))
	}
	return nil
}

// Status returns the relay's progress, with the lag read from the log.
func (r *Relay) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	s := r.status
	r.mu.Unlock()
	if s.State == StateStopped {
		// A relay that is not running (or has not loaded its cursor yet) holds no progress
		// of its own: the stored cursor is where it stands.
		var err error
		if s.Cursor, err = r.storedCursor(ctx); err != nil {
			return s, err
		}
	}
	last := r.st.Log().Last()
	if last <= s.Cursor {
		return s, nil
	}
	s.LagEvents = last - s.Cursor
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		at, err := er.LogTime(s.Cursor + 1)
		if err != nil {
			return err
		}
		s.LagSeconds = max(0, r.cfg.Now().Sub(at).Seconds())
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("date the lag of endpoint %q: %w", r.cfg.Endpoint, err)
	}
	return s, nil
}
