package api

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkGetTwin measures a twin read over HTTP: routing, api-version check, the graph's
// read from SQLite and the response.
func BenchmarkGetTwin(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	for b.Loop() {
		if r := e.do(http.MethodGet, "/digitaltwins/t", ""); r.status != http.StatusOK {
			b.Fatalf("GET: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkGetTwinOldVersion is BenchmarkGetTwin at an api-version whose documents are
// rewritten without sourceTime and $lastUpdateTime.
func BenchmarkGetTwinOldVersion(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	for b.Loop() {
		if r := e.do(http.MethodGet, "/digitaltwins/t?api-version=2020-10-31", ""); r.status != http.StatusOK {
			b.Fatalf("GET: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkPatchTwin measures a durable twin patch over HTTP, one client at a time.
func BenchmarkPatchTwin(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	i := 0
	for b.Loop() {
		i++
		patch := fmt.Sprintf(`[{"op": "replace", "path": "/counter", "value": %d}]`, i)
		if r := e.do(http.MethodPatch, "/digitaltwins/t", patch); r.status != http.StatusNoContent {
			b.Fatalf("PATCH: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkPatchTwinsParallel measures durable patches over HTTP from concurrent clients, each
// on its own twin, so the store can group their commits.
func BenchmarkPatchTwinsParallel(b *testing.B) {
	e := newTestEnv(b, Config{})
	const twins = 64
	for i := range twins {
		e.putRoom(fmt.Sprintf("t%d", i))
	}
	var clients atomic.Int64
	b.SetParallelism(16) // 16 clients per CPU
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("/digitaltwins/t%d", clients.Add(1)%twins)
		n := 0
		for pb.Next() {
			n++
			patch := fmt.Sprintf(`[{"op": "replace", "path": "/counter", "value": %d}]`, n)
			r, err := e.try(http.MethodPatch, id, patch)
			if err != nil || r.status != http.StatusNoContent {
				b.Errorf("PATCH: %v %d %s", err, r.status, r.body)
				return
			}
		}
	})
}
