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
// n-1 (once per batch at most), then replays the series' timeline up to record n, which it
// leaves out. The timeline (replay.go) is the backtest's: the series' history rows merged in
// log order with its siblings' when the detector compares peers, each point scored by the
// model with the siblings' values then, a fresh model after each deletion of the twin and a
// sibling's value forgotten at its deletion, as history's lifecycle tells. The model then
// holds what a detector that watched the series and its siblings from their first points
// holds, its peer part included, and the points scored from then on get the scores a backtest
// gives them. The scorer also takes from the replay the latest values of siblings it holds
// none of, as when their states are gone too, once per sibling and run. A point of a twin's
// creation needs no rebuilt model: it begins the series. Without data history a series
// without a usable state starts with a fresh model, which warms up again.
//
// # Peers
//
// With peers on, a point is also compared with the latest values of the same property of its
// twin's siblings (peers.go): streaming keeps the value of each series' latest point, and
// its stored state holds it, so a restart compares with the same values.
//
// # Backtest
//
// Backtest replays the timeline of one series with a fresh model from the first point data
// history holds, without look-ahead, starting a fresh model again after each deletion of the
// twin, so its scores equal those of streaming; a continuation token carries the model's
// state and where each sibling's history was read to, with its latest value.
package detector
