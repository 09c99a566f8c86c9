package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

func TestPrunerDeletesExpiredIDs(t *testing.T) {
	st := openStore(t)
	t0 := time.Now()
	err := st.UpdateIngress(context.Background(), func(w store.IngressWriter) error {
		for i := range 6 {
			r := store.MessageRecord{Source: "a", ID: fmt.Sprint(i), Time: t0, Expires: t0.Add(time.Duration(i) * time.Minute)}
			if err := w.RecordMessage(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3 * time.Minute)
	p, err := NewPruner(PrunerConfig{Now: func() time.Time { return now }}, st, discard)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Prune(context.Background()); err != nil || n != 4 {
		t.Fatalf("Prune = %d, %v; want the 4 ids expired by t0+3m", n, err)
	}
	if n, err := p.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("Prune again = %d, %v; want 0", n, err)
	}
}
