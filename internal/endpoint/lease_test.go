package endpoint

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/store"
)

// keeperHolder is a Holder over a lease.Keeper of node, on table, as the server's.
type keeperHolder struct {
	*lease.Keeper
	table lease.Table
	node  string
}

func (h keeperHolder) Owner(ctx context.Context, name string) (string, bool, error) {
	gs, err := h.table.Owners(ctx)
	if err != nil {
		return "", false, err
	}
	for _, g := range gs {
		if g.Name == name {
			service, _, _ := strings.Cut(g.Holder, "#")
			return service, g.Holder == h.node, nil
		}
	}
	return "", false, nil
}

// TestRegistryRelaysUnderLease checks that with a Holder a relay runs only while this node
// holds the endpoint's lease: while another node holds it the endpoint stands by, names the
// owner and refuses replays, and once that node lets go this one delivers what it missed.
func TestRegistryRelaysUnderLease(t *testing.T) {
	ctx := context.Background()
	table := &lease.Local{}
	other, err := table.Acquire(ctx, LeaseName("hook"), "other:1#aa", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, err := lease.New(lease.Config{Holder: "this:1#bb", TTL: time.Second, Retry: 10 * time.Millisecond}, table, discard)
	if err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 1)
	go func() { kdone <- k.Run(kctx) }()
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	f := newFixture(t, Config{Holder: keeperHolder{Keeper: k, table: table, node: "this:1#bb"}})
	t.Cleanup(func() {
		stop()
		<-kdone
	})

	if _, err := f.reg.Put(ctx, "hook", []byte(`{"endpointType":"webhook","url":"`+srv.URL+`"}`)); err != nil {
		t.Fatal(err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "e1")
	st, err := f.reg.Status(ctx, "hook")
	if err != nil || st.State != StateStandby || st.Owner != "other:1" {
		t.Fatalf("Status while another node holds the lease = %+v, %v; want standby, owner other:1", st, err)
	}
	if err := f.reg.Replay(ctx, "hook", 1); !errors.Is(err, ErrStandby) || !strings.Contains(err.Error(), "other:1") {
		t.Errorf("Replay on a standby node = %v; want ErrStandby naming other:1", err)
	}

	if err := table.Release(ctx, other); err != nil {
		t.Fatal(err)
	}
	eventually(t, "this node delivers e1", func() bool { return slices.Contains(h.received(), "e1") })
	st, err = f.reg.Status(ctx, "hook")
	if err != nil || st.State == StateStandby || st.Owner != "this:1" {
		t.Errorf("Status once this node holds the lease = %+v, %v; want the relay's state, owner this:1", st, err)
	}
}
