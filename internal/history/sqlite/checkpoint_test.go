package sqlite

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// TestLateRowDuringBuild writes a row older than the checkpoint being built after the build
// has read its snapshot, and checks that the build publishes nothing and Past sees the row.
func TestLateRowDuringBuild(t *testing.T) {
	ctx := context.Background()
	st, err := Open(Config{Dir: t.TempDir(), CheckpointRows: 2, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prop := func(seq uint64, m int, value string) history.PropertyEvent {
		return history.PropertyEvent{Seq: seq, TimeStamp: t0.Add(time.Duration(m) * time.Minute), ServiceID: "svc",
			ID: "t", ModelID: "dtmi:x:T;1", Key: "k", Value: json.RawMessage(value), Action: history.ActionUpdate}
	}
	rows := history.Rows{
		Twins: []history.TwinLifecycleEvent{{Seq: 1, TwinID: "t", Action: history.LifecycleCreate, TimeStamp: t0,
			ServiceID: "svc", ModelID: "dtmi:x:T;1"}},
		Properties: []history.PropertyEvent{prop(1, 0, "1"), prop(2, 2, "2"), prop(3, 4, "3")},
	}
	if err := st.Write(ctx, &rows, 3); err != nil {
		t.Fatal(err)
	}
	late := history.Rows{Properties: []history.PropertyEvent{prop(4, 1, "4")}}
	st.beforePublish = func() {
		st.beforePublish = nil
		if err := st.Write(ctx, &late, 4); err != nil {
			t.Error(err)
		}
	}
	for {
		done, err := st.Checkpoint(ctx, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if st.beforePublish != nil {
		t.Fatal("no checkpoint was built")
	}
	var n int
	if err := st.rdb.QueryRow(`SELECT count(*) FROM history_checkpoints`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("%d checkpoints after the late build (%v): the next build was not made", n, err)
	}
	s, err := history.AsOf(ctx, st, t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Twins[0].Properties["k"]); got != "4" {
		t.Fatalf("k as of minute 3 = %s, want 4 (the late row's)", got)
	}
}
