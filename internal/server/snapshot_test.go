package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/testenv"
)

// TestIndexSnapshot checks that a clean stop writes the index's snapshot, that a start loads
// it and replays the writes made after it, that a damaged one is not used, and that
// snapshots can be turned off.
func TestIndexSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SnapshotFile)
	cfg := Config{Config: config.Config{Server: config.Server{DataDir: dir}}}
	send := func(s *Server, method, p, body string, want int) string {
		t.Helper()
		req, err := http.NewRequest(method, s.URL()+p+"?api-version=2023-10-31", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, p, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, p, resp.StatusCode, b, want)
		}
		return string(b)
	}
	// query answers the twins and the relationships, sorted: an index built from the store
	// may list them in another order than one that followed the writes.
	query := func(s *Server) string {
		t.Helper()
		var rows []string
		for _, q := range []string{
			`{"query":"SELECT T.$dtId AS t, T.n AS n FROM DIGITALTWINS T WHERE T.n >= 0"}`,
			`{"query":"SELECT R.$sourceId AS s, R.$targetId AS d FROM RELATIONSHIPS R"}`,
		} {
			var page struct{ Value []json.RawMessage }
			if err := json.Unmarshal([]byte(send(s, http.MethodPost, "/query", q, http.StatusOK)), &page); err != nil {
				t.Fatal(err)
			}
			for _, row := range page.Value {
				rows = append(rows, string(row))
			}
		}
		slices.Sort(rows)
		return strings.Join(rows, "\n")
	}
	startLogged := func(cfg Config) (*Server, func() error, *syncBuffer) {
		t.Helper()
		var logs syncBuffer
		s, stop := start(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		return s, stop, &logs
	}

	s, stop, _ := startLogged(cfg)
	send(s, http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:S;1","@type":"Interface","@context":"dtmi:dtdl:context;2",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer"},{"@type":"Relationship","name":"next"}]}]`, http.StatusCreated)
	for i := range 4 {
		send(s, http.MethodPut, fmt.Sprintf("/digitaltwins/s%d", i), fmt.Sprintf(`{"$metadata":{"$model":"dtmi:twinflow:test:S;1"},"n":%d}`, i), http.StatusOK)
	}
	for i := range 3 {
		send(s, http.MethodPut, fmt.Sprintf("/digitaltwins/s%d/relationships/r%d", i, i),
			fmt.Sprintf(`{"$relationshipName":"next","$targetId":"s%d"}`, i+1), http.StatusOK)
	}
	want := query(s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seq, err := graph.SnapshotSeq(path)
	if err != nil {
		t.Fatalf("no snapshot after a clean stop: %v", err)
	}
	// The log's pruner keeps the record at the snapshot's seq and those after it from the
	// next start on, and a
	// snapshot cut short by a crash while it was written is removed.
	cut := path + graph.SnapshotTempSuffix + "123"
	if err := os.WriteFile(cut, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if held := newSnapshotter(config.Index{}, dir, slog.New(slog.DiscardHandler)).held(); held != seq-1 {
		t.Errorf("the pruner is told to keep the records after %d, want from the snapshot's seq %d on", held, seq)
	}
	if sn := newSnapshotter(config.Index{Snapshot: config.SnapshotOff}, dir, nil); sn != nil {
		t.Error("a snapshotter with snapshots off")
	}
	if _, err := os.Stat(cut); !os.IsNotExist(err) {
		t.Errorf("the snapshot cut short is still there (%v)", err)
	}

	s, stop, logs := startLogged(cfg)
	if !strings.Contains(logs.String(), "graph index loaded from its snapshot") {
		t.Errorf("the start did not load the snapshot:\n%s", logs)
	}
	if got := query(s); got != want {
		t.Errorf("loaded from the snapshot, the index answers\n%s\nwant\n%s", got, want)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	send(s, http.MethodPatch, "/digitaltwins/s1", `[{"op":"replace","path":"/n","value":10}]`, http.StatusNoContent)
	send(s, http.MethodDelete, "/digitaltwins/s0/relationships/r0", "", http.StatusNoContent)
	send(s, http.MethodDelete, "/digitaltwins/s0", "", http.StatusNoContent)
	send(s, http.MethodPut, "/digitaltwins/s3/relationships/r3", `{"$relationshipName":"next","$targetId":"s1"}`, http.StatusOK)
	want = query(s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if newer, err := graph.SnapshotSeq(path); err != nil || newer <= seq {
		t.Errorf("snapshot after the second stop at seq %d (%v), want past %d", newer, err, seq)
	}

	// The older snapshot, as a crash would have left it: the writes after it are replayed.
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, stop, logs = startLogged(cfg)
	if !strings.Contains(logs.String(), "graph index loaded from its snapshot") {
		t.Errorf("the start did not load the older snapshot:\n%s", logs)
	}
	if got := query(s); got != want {
		t.Errorf("loaded from the older snapshot and replayed, the index answers\n%s\nwant\n%s", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A damaged snapshot is not used: the index is built from the store.
	damaged, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	s, stop, logs = startLogged(cfg)
	if !strings.Contains(logs.String(), "snapshot not used") {
		t.Errorf("the damaged snapshot was not reported:\n%s", logs)
	}
	if got := query(s); got != want {
		t.Errorf("built after a damaged snapshot, the index answers\n%s\nwant\n%s", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Off: neither loaded nor written.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	off := cfg
	off.Index.Snapshot = config.SnapshotOff
	s, stop, _ = startLogged(off)
	if got := query(s); got != want {
		t.Errorf("with snapshots off, the index answers\n%s\nwant\n%s", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("with snapshots off, a snapshot was written (%v)", err)
	}
}

// TestIndexSnapshotPostgreSQL has two nodes share a PostgreSQL store, each with a data
// directory of its own: a node that stops cleanly and starts again loads its own snapshot and
// replays what the other node wrote meanwhile.
func TestIndexSnapshotPostgreSQL(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "snapshot")
	node := func(dir string) Config {
		return Config{Config: config.Config{
			Server: config.Server{DataDir: dir},
			Store:  config.Store{DSN: dsn, Schema: schema},
		}}
	}
	dirA := t.TempDir()
	var logs syncBuffer
	a, stopA := start(t, node(dirA), nil)
	ca := restClient{t: t, base: a.URL()}
	ca.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:P;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	ca.do(http.MethodPut, "/digitaltwins/a", `{"$metadata":{"$model":"dtmi:twinflow:test:P;1"},"n":1}`, http.StatusOK)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if _, err := graph.SnapshotSeq(filepath.Join(dirA, SnapshotFile)); err != nil {
		t.Fatalf("no snapshot in node A's data directory after a clean stop: %v", err)
	}

	b, _ := start(t, node(t.TempDir()), nil)
	cb := restClient{t: t, base: b.URL()}
	cb.do(http.MethodPut, "/digitaltwins/b", `{"$metadata":{"$model":"dtmi:twinflow:test:P;1"},"n":1}`, http.StatusOK)
	cb.do(http.MethodPatch, "/digitaltwins/a", `[{"op":"replace","path":"/n","value":2}]`, http.StatusNoContent)

	a, _ = start(t, node(dirA), slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "graph index loaded from its snapshot") {
		t.Errorf("node A did not load its snapshot:\n%s", logs.String())
	}
	ca = restClient{t: t, base: a.URL()}
	got := string(ca.do(http.MethodPost, "/query", map[string]any{"query": "SELECT T.$dtId, T.n FROM DIGITALTWINS T"}, http.StatusOK))
	if !strings.Contains(got, `"$dtId":"a","n":2`) || !strings.Contains(got, `"$dtId":"b","n":1`) {
		t.Errorf("node A after loading its snapshot answers %s; want a with n 2 and b", got)
	}
}
