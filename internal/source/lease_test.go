package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/lease"
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

// TestSourcesUnderLease checks that with a Holder a source other than http runs only while
// this node holds its lease: while another node holds it the source stands by and names the
// owner, an http source takes pushes all along, and once the lease is this node's the source
// runs, and runs anew, with a new source, after the lease was lost and regained.
func TestSourcesUnderLease(t *testing.T) {
	ctx := context.Background()
	table := &lease.Local{}
	other, err := table.Acquire(ctx, LeaseName(EventsSource), "other:1#aa", time.Hour)
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
	t.Cleanup(func() {
		stop()
		<-kdone
	})
	e := newEnvWith(t, Config{Holder: keeperHolder{Keeper: k, table: table, node: "this:1#bb"}},
		map[string]Kind{HTTPType: HTTPKind()}, discard)
	e.putSource("plant", `{"sourceType":"http"}`)
	e.putMapping("device", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)
	e.putMapping("shadow", `{"source":"$events","twin":"$dtId","set":{"source":"$dtId"}}`)

	st, err := e.reg.Status(ctx, EventsSource)
	if err != nil || st.State != Standby || st.Owner != "other:1" {
		t.Fatalf("$events status while another node holds its lease = %+v, %v; want standby, owner other:1", st, err)
	}
	if out := e.push("plant", "application/json", `{"id":"t1","t":1}`, nil); results(out) != "applied" {
		t.Fatalf("push to the http source of a standby node = %+v; want applied", out)
	}
	if st, err := e.reg.Status(ctx, "plant"); err != nil || st.Owner != "" || st.State != ingress.Running {
		t.Errorf("http source status = %+v, %v; want running without an owner", st, err)
	}

	if err := table.Release(ctx, other); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "this node propagates t1's change", func() bool {
		doc := e.twin("t1")
		return doc != nil && doc["source"] == "t1"
	})
	if st, err := e.reg.Status(ctx, EventsSource); err != nil || st.Owner != "this:1" || st.State == Standby {
		t.Errorf("$events status once this node holds its lease = %+v, %v", st, err)
	}

	// The lease is lost (released behind the keeper's back) and regained: a new source runs.
	for _, g := range k.Grants() {
		if err := table.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the lease to be regained", func() bool {
		gs := k.Grants()
		return len(gs) == 1 && gs[0].Token > other.Token+1
	})
	e.push("plant", "application/json", `{"id":"t2","t":1}`, nil)
	waitFor(t, "this node propagates t2's change after regaining the lease", func() bool {
		doc := e.twin("t2")
		return doc != nil && doc["source"] == "t2"
	})
}
