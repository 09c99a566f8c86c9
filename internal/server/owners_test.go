package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/testenv"
)

// hook is a webhook destination that keeps the bodies it receives.
type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newHook(t testing.TB) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(body))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// got reports whether a body holding s arrived.
func (h *hook) got(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.bodies, func(b string) bool { return strings.Contains(b, s) })
}

// node is one of the servers of a cluster on one PostgreSQL schema, reaching the database
// through a proxy of its own, so that cutting it is that node's crash as the database sees
// it: its connections drop and its leases are not released.
type node struct {
	s    *Server
	db   *testenv.Proxy
	stop func() error
	c    restClient
}

// cluster starts servers on one fresh PostgreSQL schema, dropped when t ends, with leases of
// ttl.
type cluster struct {
	t      testing.TB
	dsn    string
	schema string
	ttl    time.Duration
}

func newCluster(t testing.TB, ttl time.Duration) *cluster {
	dsn, schema := testenv.PostgreSQLSchema(t, "owners")
	return &cluster{t: t, dsn: dsn, schema: schema, ttl: ttl}
}

// start starts a node and waits until it is ready.
func (c *cluster) start() *node {
	db := testenv.NewProxy(c.t, testenv.PostgreSQLAddr)
	s, stop := start(c.t, Config{Config: config.Config{
		Store: config.Store{DSN: strings.Replace(c.dsn, testenv.PostgreSQLAddr, db.Addr(), 1), Schema: c.schema,
			StatementTimeout: 5 * time.Second, LeaseTTL: c.ttl},
		History: config.History{Mode: config.HistoryOff},
	}}, nil)
	return &node{s: s, db: db, stop: stop, c: restClient{t: c.t, base: s.URL()}}
}

// endpointStatus returns the status of the endpoint name as n's API shows it.
func (n *node) endpointStatus(name string) (state, owner string) {
	var ep struct {
		Status struct{ State, Owner string }
	}
	if err := json.Unmarshal(n.c.do(http.MethodGet, "/endpoints/"+name, nil, http.StatusOK), &ep); err != nil {
		n.c.t.Fatalf("decode endpoint %s: %v", name, err)
	}
	return ep.Status.State, ep.Status.Owner
}

// leases returns the leases n's /readyz says it holds.
func (n *node) leases() []string {
	var body struct {
		Node   string
		Leases []string
	}
	_, raw := get(n.c.t, http.DefaultClient, n.s.URL()+"/readyz")
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		n.c.t.Fatalf("decode /readyz %s: %v", raw, err)
	}
	if body.Node != n.s.NodeID() {
		n.c.t.Errorf("/readyz names node %q, want %q", body.Node, n.s.NodeID())
	}
	return body.Leases
}

// relayPair starts two nodes on cl, the first creating an endpoint delivering every event to
// h, and the second starting once it exists, so that it knows it; it returns them once both
// name the same owner of the relay, which delivers, while the other stands by.
func relayPair(cl *cluster, h *hook) (owner, standby *node) {
	a := cl.start()
	a.c.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:F;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	a.c.do(http.MethodPut, "/endpoints/hook", `{"endpointType":"webhook","url":"`+h.srv.URL+`"}`, http.StatusCreated)
	a.c.do(http.MethodPut, "/eventroutes/all", `{"endpointName":"hook","filter":"true"}`, http.StatusNoContent)
	a.c.do(http.MethodPut, "/digitaltwins/f", `{"$metadata":{"$model":"dtmi:twinflow:test:F;1"},"n":1}`, http.StatusOK)
	b := cl.start()
	waitFor(cl.t, "both nodes to name the same owner of the relay", func() bool {
		sa, oa := a.endpointStatus("hook")
		sb, ob := b.endpointStatus("hook")
		switch {
		case oa == "" || oa != ob:
			return false
		case oa == a.s.ServiceID() && sb == endpoint.StateStandby && sa != endpoint.StateStandby:
			owner, standby = a, b
		case oa == b.s.ServiceID() && sa == endpoint.StateStandby && sb != endpoint.StateStandby:
			owner, standby = b, a
		default:
			return false
		}
		return true
	})
	return owner, standby
}

// patch sets twin f's n to v through n's API.
func (n *node) patch(v int) {
	n.c.do(http.MethodPatch, "/digitaltwins/f", fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, v), http.StatusNoContent)
}

// TestRelayOwnerFailover runs two servers on one PostgreSQL store: exactly one of them runs
// an endpoint's relay, both say which, and when that one dies without releasing its lease
// (its database connections cut) the other takes the relay over and delivers the events
// written after.
func TestRelayOwnerFailover(t *testing.T) {
	cl := newCluster(t, time.Second)
	h := newHook(t)
	owner, standby := relayPair(cl, h)
	if ls := owner.leases(); !slices.Contains(ls, endpoint.LeaseName("hook")) {
		t.Errorf("the owner's /readyz lists leases %q, without %s", ls, endpoint.LeaseName("hook"))
	}
	if ls := standby.leases(); slices.Contains(ls, endpoint.LeaseName("hook")) {
		t.Errorf("the standby's /readyz lists leases %q, with %s", ls, endpoint.LeaseName("hook"))
	}
	// A replay is the owner's to do.
	code, body := post(t, standby.s.URL()+"/endpoints/hook/replay?api-version=2023-10-31", `{"fromSequence":1}`)
	if code != http.StatusBadRequest || !strings.Contains(body, owner.s.ServiceID()) {
		t.Errorf("replay on the standby node = %d %s; want 400 naming the owner %s", code, body, owner.s.ServiceID())
	}
	standby.patch(1001)
	waitFor(t, "the owner to deliver the first patch", func() bool { return h.got(`"value":1001`) })

	// The owner dies: its database connections drop and it releases nothing.
	owner.db.Cut()
	died := time.Now()
	waitFor(t, "the standby to take the relay over", func() bool {
		st, o := standby.endpointStatus("hook")
		return o == standby.s.ServiceID() && st != endpoint.StateStandby
	})
	took := time.Since(died)
	t.Logf("relay taken over %v after its owner died (lease TTL %v)", took, cl.ttl)
	if took > 10*time.Second {
		t.Errorf("relay taken over %v after its owner died; want at most 10 s", took)
	}
	standby.patch(2002)
	waitFor(t, "the new owner to deliver the patch written after the failover", func() bool { return h.got(`"value":2002`) })

	// The dead node may have stopped by itself: its graph index cannot follow the log
	// without the database.
	owner.db.Restore()
	_ = owner.stop()
}

// post posts body to url and returns the status and the answer's body.
func post(t testing.TB, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read POST %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// BenchmarkRelayFailover measures how long an endpoint goes without delivery when the node
// running its relay dies: from the moment its database connections are cut (it releases
// nothing) until the other node, having taken the lease over, delivers an event written
// through it just after. Each iteration starts a pair of nodes on a fresh schema; the
// failover-s metric is the mean. The takeover is bounded by the TTL plus a third of it.
func BenchmarkRelayFailover(b *testing.B) {
	for _, ttl := range []time.Duration{time.Second, lease.DefaultTTL} {
		b.Run("ttl="+ttl.String(), func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				b.StopTimer()
				cl := newCluster(b, ttl)
				h := newHook(b)
				owner, standby := relayPair(cl, h)
				standby.patch(1000 + i)
				waitFor(b, "the owner to deliver", func() bool { return h.got(fmt.Sprintf(`"value":%d`, 1000+i)) })
				b.StartTimer()
				owner.db.Cut()
				died := time.Now()
				standby.patch(2000 + i)
				waitFor(b, "the new owner to deliver", func() bool { return h.got(fmt.Sprintf(`"value":%d`, 2000+i)) })
				total += time.Since(died)
				b.StopTimer()
				owner.db.Restore()
				owner.stop()
				standby.stop()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
		})
	}
}
