package query

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

var benchTwins = flag.Int("twins", 10_000, "twins (and relationships) in the query benchmark's graph")

// benchModels are the benchmark's three models: Thermometer extends Sensor; Meter stands
// alone. All have the same ten properties.
func benchModels() string {
	props := `{"@type":"Property","name":"temperature","schema":"double","writable":true},
	  {"@type":"Property","name":"humidity","schema":"double","writable":true},
	  {"@type":"Property","name":"name","schema":"string","writable":true},
	  {"@type":"Property","name":"serial","schema":"string","writable":true},
	  {"@type":"Property","name":"count","schema":"integer","writable":true},
	  {"@type":"Property","name":"level","schema":"integer","writable":true},
	  {"@type":"Property","name":"on","schema":"boolean","writable":true},
	  {"@type":"Property","name":"alarm","schema":"boolean","writable":true},
	  {"@type":"Property","name":"unit","schema":"string","writable":true},
	  {"@type":"Property","name":"pressure","schema":"double","writable":true},
	  {"@type":"Relationship","name":"feeds"}`
	return `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:bench:Sensor;1","@type":"Interface","contents":[` + props + `]},
	 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:bench:Thermometer;1","@type":"Interface","extends":"dtmi:bench:Sensor;1"},
	 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:bench:Meter;1","@type":"Interface","contents":[` + props + `]}]`
}

var benchModelIDs = [...]string{"dtmi:bench:Sensor;1", "dtmi:bench:Thermometer;1", "dtmi:bench:Meter;1"}

const benchTime = "2026-01-02T03:04:05.1234567Z"

func benchTwinID(i int) string { return fmt.Sprintf("twin-%07d", i) }

// benchTwin returns twin i's document in the stored shape: ten properties, each with its
// $metadata entry. Temperatures spread evenly over 0..50.
func benchTwin(i int) store.Twin {
	id, model := benchTwinID(i), benchModelIDs[i%3]
	props := []struct {
		name string
		val  any
	}{
		{"alarm", i%7 == 0}, {"count", i % 1000}, {"humidity", float64(i%100) / 2},
		{"level", i % 10}, {"name", "twin " + strconv.Itoa(i)}, {"on", i%2 == 0},
		{"pressure", 1000 + float64(i%50)}, {"serial", fmt.Sprintf("SN-%08x", i*2654435761%(1<<32))},
		{"temperature", float64(i*37%500) / 10}, {"unit", "C"},
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"$dtId":%q,"$etag":"W/\"%08x-0000-4000-8000-000000000000\"","$metadata":{"$lastUpdateTime":%q,"$model":%q`, id, i, benchTime, model)
	for _, p := range props {
		fmt.Fprintf(&b, `,%q:{"lastUpdateTime":%q}`, p.name, benchTime)
	}
	b.WriteString("}")
	for _, p := range props {
		v, _ := json.Marshal(p.val)
		fmt.Fprintf(&b, `,%q:%s`, p.name, v)
	}
	b.WriteString("}")
	return store.Twin{ID: id, ModelID: model, ETag: fmt.Sprintf(`W/"%08x"`, i), Doc: json.RawMessage(b.String())}
}

// benchRel returns relationship i: twin i feeds twin (7i+1) mod n.
func benchRel(i, n int) store.Relationship {
	src, dst := benchTwinID(i), benchTwinID((7*i+1)%n)
	id := "feeds-" + strconv.Itoa(i)
	doc := fmt.Sprintf(`{"$relationshipId":%q,"$etag":"W/\"%08x\"","$sourceId":%q,"$relationshipName":"feeds","$targetId":%q,"weight":%d}`, id, i, src, dst, i%10)
	return store.Relationship{SourceID: src, ID: id, Name: "feeds", TargetID: dst, ETag: fmt.Sprintf(`W/"%08x"`, i), Doc: json.RawMessage(doc)}
}

// BenchmarkQuery measures the queries of issue 4 over -twins twins of three models (one
// extending another) and as many relationships, next to a naive baseline that reads and
// decodes every stored twin, and reports the resident memory with the index built. Run the
// full size with: go test -run XXX -bench Query -benchtime 5x ./internal/query -args -twins 1000000
func BenchmarkQuery(b *testing.B) {
	n := *benchTwins
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g, err := twins.New(twins.Config{ServiceID: "bench"}, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := g.AddModels(ctx, []byte(benchModels())); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	const batch = 10_000
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(w store.Writer) error {
			for i := lo; i < min(lo+batch, n); i++ {
				if err := w.PutTwin(benchTwin(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(w store.Writer) error {
			for i := lo; i < min(lo+batch, n); i++ {
				if err := w.PutRelationship(benchRel(i, n)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored %d twins and %d relationships in %v", n, n, time.Since(start).Round(time.Millisecond))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	idx, err := graph.New(ctx, graph.Config{}, st, g.Models, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built the index in %v", time.Since(start).Round(time.Millisecond))
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("resident memory with the index built: %s (peak %s); Go heap in use %d MiB, of which the index %d MiB",
		procStatus("VmRSS"), procStatus("VmHWM"), ms.HeapInuse>>20, (int64(ms.HeapInuse)-int64(before.HeapInuse))>>20)

	const filter = "IS_OF_MODEL(T, 'dtmi:bench:Sensor;1') AND T.temperature > 30"
	anchor := benchTwinID(n / 2)
	medians := map[string]time.Duration{}
	run := func(name, text string, pageSize int) {
		p, err := Prepare(text)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			var times []time.Duration
			rows := 0
			for b.Loop() {
				t0 := time.Now()
				err := idx.Read(ctx, func(r *graph.Reader) error {
					page, err := p.Run(ctx, r, Cursor{}, pageSize)
					rows = len(page.Rows)
					return err
				})
				times = append(times, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
			}
			if rows == 0 {
				b.Fatalf("%s returned no rows", text)
			}
			medians[name] = reportP50(b, times)
		})
	}
	run("FilterFirstPage", "SELECT * FROM DIGITALTWINS T WHERE "+filter, 100)
	run("Count", "SELECT COUNT() FROM DIGITALTWINS T WHERE "+filter, 100)
	run("JoinFromID", "SELECT T, U FROM DIGITALTWINS T JOIN U RELATED T.feeds WHERE T.$dtId = '"+anchor+"'", 100)
	run("Match3HopsFromID", "SELECT a, d FROM DIGITALTWINS MATCH (a)-[:feeds*3]->(d) WHERE a.$dtId = '"+anchor+"'", 100)

	// The naive baseline: page through the stored twins, decode each and apply the filter.
	sensor := []string{benchModelIDs[0], benchModelIDs[1]}
	naive := func(name string, limit int) {
		b.Run(name, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				t0 := time.Now()
				matched := 0
				err := st.View(ctx, func(r store.Reader) error {
					for after := ""; ; {
						page, err := r.Twins(after, 1000)
						if err != nil {
							return err
						}
						for _, t := range page {
							var doc map[string]any
							if err := json.Unmarshal(t.Doc, &doc); err != nil {
								return err
							}
							md, _ := doc["$metadata"].(map[string]any)
							model, _ := md["$model"].(string)
							temp, isNum := doc["temperature"].(float64)
							if slices.Contains(sensor, model) && isNum && temp > 30 {
								if matched++; matched == limit {
									return nil
								}
							}
						}
						if len(page) < 1000 {
							return nil
						}
						after = page[len(page)-1].ID
					}
				})
				times = append(times, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
			}
			medians[name] = reportP50(b, times)
		})
	}
	naive("NaiveFirstPage", 100)
	naive("NaiveCount", -1)
	if medians["FilterFirstPage"] > 0 && medians["Count"] > 0 && medians["NaiveCount"] > 0 {
		b.Logf("p50 at %d twins: first page %v (naive %v, %.0fx); count %v (naive %v, %.0fx); join %v; 3-hop match %v",
			n, medians["FilterFirstPage"], medians["NaiveFirstPage"], float64(medians["NaiveFirstPage"])/float64(medians["FilterFirstPage"]),
			medians["Count"], medians["NaiveCount"], float64(medians["NaiveCount"])/float64(medians["Count"]),
			medians["JoinFromID"], medians["Match3HopsFromID"])
	}
}

// reportP50 reports the median of times as the p50-ms metric and returns it.
func reportP50(b *testing.B, times []time.Duration) time.Duration {
	slices.Sort(times)
	p50 := times[len(times)/2]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	return p50
}

// procStatus returns a field of /proc/self/status, such as "VmRSS", or "n/a".
func procStatus(field string) string {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "n/a"
}
