package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// dbProxy forwards TCP connections to PostgreSQL until cut, which drops every connection and
// makes new ones close at once, as a database server that went down; restore brings it back.
type dbProxy struct {
	ln net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newDBProxy(t *testing.T) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	return p
}

func (p *dbProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", testenv.PostgreSQLAddr)
	p.mu.Lock()
	if err != nil || p.down {
		p.mu.Unlock()
		c.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *dbProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *dbProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestClusterSurvivesDatabaseOutage runs two nodes on one PostgreSQL schema, reached through
// a proxy, and patches twins through both while the database goes away for two seconds (every
// connection dropped, new ones refused) and comes back: the nodes keep running, answer writes
// 503 meanwhile, take writes again without a restart, and every acknowledged write is stored.
func TestClusterSurvivesDatabaseOutage(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	schema := fmt.Sprintf("outage_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropClusterSchema(t, dsn, schema) })
	db := newDBProxy(t)
	proxied := strings.Replace(dsn, testenv.PostgreSQLAddr, db.ln.Addr().String(), 1)

	bin := process.Build(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "store: {dsn: %q, schema: %s}\n", proxied, schema), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(i int) *process.Process {
		return process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--history", "off", "--config", config)
	}
	a := start(0)
	ca := newClient(a.URL, 16)
	ca.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	for i := range clusterTwins {
		ca.must(t, http.MethodPut, twinPath(fmt.Sprintf("o%d", i)), sensorTwin(0), http.StatusOK)
	}
	b := start(1)
	clients := []*client{ca, newClient(b.URL, 16)}

	var (
		mu          sync.Mutex
		acked       = map[string]int{}
		unavailable int
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range clusterTwins {
		id := fmt.Sprintf("o%d", i)
		wg.Go(func() {
			for v, n := 1, i; ctx.Err() == nil; n, v = n+1, v+1 {
				resp, err := clients[n%2].do(ctx, http.MethodPatch, twinPath(id),
					[]map[string]any{{"op": "replace", "path": "/value", "value": v}})
				switch {
				case err != nil:
					continue
				case resp.status == http.StatusNoContent:
					mu.Lock()
					acked[id] = v
					mu.Unlock()
				case resp.status == http.StatusServiceUnavailable && resp.header.Get("Retry-After") != "":
					mu.Lock()
					unavailable++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				default:
					t.Errorf("PATCH %s = %d %s", id, resp.status, resp.body)
					return
				}
			}
		})
	}
	time.Sleep(time.Second)
	db.cut()
	time.Sleep(2 * time.Second)
	db.restore()
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	// Writes are taken again, through both nodes, without a restart.
	waitUntil(t, 30*time.Second, "writes after the outage", func() bool {
		for _, c := range clients {
			resp, err := c.do(t.Context(), http.MethodPatch, twinPath("o0"), []map[string]any{{"op": "add", "path": "/label", "value": "after"}})
			if err != nil || resp.status != http.StatusNoContent {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	cancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if unavailable == 0 {
		t.Error("no write was answered 503 with Retry-After while the database was away")
	}
	t.Logf("%d twins with acknowledged writes (%d before the database came back), %d writes answered 503", len(acked), before, unavailable)
	for id, v := range acked {
		for _, c := range clients {
			var doc twinDoc
			if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Value < v {
				t.Errorf("twin %s holds %d on %s, but %d was acknowledged", id, doc.Value, c.base, v)
			}
		}
	}
	for _, p := range []*process.Process{a, b} {
		select {
		case <-p.Done():
			t.Errorf("a node exited during the outage:\n%s", p.Output())
		default:
		}
	}
}
