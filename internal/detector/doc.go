// Package detector runs anomaly detectors over twin properties: a Service keeps their
// definitions in the store, scores the change log with one scorer per detector, and
// backtests a series over data history.
//
// # Streaming
//
// A scorer is a change-log consumer with its own durable cursor. Every creation and update
// of a twin its query selects gives a point per watched property holding a number (pointOf),
// which the model of that series (package anomaly, one per twin and property) scores. The
// anomaly events of a batch of the log commit in one store transaction with a second cursor,
// the record they are committed through. The models live in memory: a checkpoint commits the
// states of those that changed with the consumer cursor, in one transaction, every
// Config.CheckpointInterval and at a clean stop, so that a model's state, about 1.1 KiB, is
// not written for each of its points. The consumer cursor, which holds back the log's
// pruning, is the checkpoint's: a start after a crash scores the records after it again with
// the models of the checkpoint, which gives the same scores (scoring is deterministic), and
// raises none of the anomalies up to the events cursor again. A restart so changes no score
// and raises no anomaly twice. A twin's deletion forgets its models: a twin created again
// with the same id is a new series.
//
// # Rebuilding a model
//
// A series whose model has no state to go on from, because the detector was created over
// twins that already have data history or because its stored state is gone or cannot be
// read (logged), has its model rebuilt when data history is on: before scoring the point of
// record n, the scorer waits until the history writer has written the log through record
// n-1 (once per batch at most), then scores with a fresh model the series' history rows
// before record n, from the latest creation of the twin on, in the order and with the code
// of a backtest. The model then holds what a detector that watched the series from its first
// point holds, and the points scored from then on get the scores a backtest gives them. A
// point of a twin's creation needs no history: it begins the series. Without data history a
// series without a usable state starts with a fresh model, which warms up again.
//
// # Backtest
//
// Backtest scores the points data history holds of one series with a fresh model from the
// first, without look-ahead, starting a fresh model again at each creation of the twin, so
// its scores equal those of streaming; a continuation token carries the model's state.
package detector
