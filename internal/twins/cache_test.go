package twins

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestTwinCacheBounded(t *testing.T) {
	c := newTwinCache(3)
	for i := range 10 {
		c.put(store.Twin{ID: fmt.Sprint(i), ETag: "e"})
		if len(c.m) > 3 {
			t.Fatalf("%d entries in a cache of 3", len(c.m))
		}
	}
	if _, ok := c.get("9"); !ok {
		t.Fatal("the newest entry was dropped")
	}
	c.put(store.Twin{ID: "9", ETag: "f"})
	if tw, _ := c.get("9"); tw.ETag != "f" || len(c.m) != 3 {
		t.Fatalf("replacing an entry: %+v, %d entries", tw, len(c.m))
	}
	c.remove("9")
	if _, ok := c.get("9"); ok {
		t.Fatal("removed entry still cached")
	}
	off := newTwinCache(-1)
	off.put(store.Twin{ID: "a"})
	if _, ok := off.get("a"); ok {
		t.Fatal("a disabled cache holds entries")
	}
}

// TestStaleCache has a second Service over the same store change a twin behind the first one's
// cache: the first one's patches still apply to the current state, and lose nothing.
func TestStaleCache(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1") // now cached by e.g
	other, err := New(e.g.cfg, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/hum","value":1}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	cur, err := e.g.Twin(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	// If-Match on the current ETag succeeds although the cache holds an older one.
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/hum","value":2}]`), cur.ETag, trace); err != nil {
		t.Fatalf("If-Match on the current ETag: %v", err)
	}
	if _, err := other.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/tags","value":{"a":"b"}}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	// An unconditional patch from a stale cache keeps the other Service's change.
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":3}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	// A patch that fails on the cached state (address was added behind the cache) uses the store.
	if _, err := other.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/address","value":{}}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/address/city","value":"Oslo"}]`), "", trace); err != nil {
		t.Fatalf("patch needing the uncached state: %v", err)
	}
	tw, err := e.g.Twin(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hum     int
		Temp    float64
		Tags    map[string]string
		Address map[string]string
	}
	if err := json.Unmarshal(tw.Doc, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Hum != 2 || doc.Temp != 3 || doc.Tags["a"] != "b" || doc.Address["city"] != "Oslo" {
		t.Fatalf("twin after patches from both graphs: %s", tw.Doc)
	}
	if n := len(e.events()); n != 6 {
		t.Fatalf("%d events; want 6", n)
	}
	// A twin deleted behind the cache is not found.
	if err := other.DeleteTwin(ctx, "r1", "", trace); err != nil {
		t.Fatal(err)
	}
	_, err = e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":4}]`), "", trace)
	wantErr(t, err, twin.KindTwinNotFound, "")
}

// TestStaleCachePut has a second Service create and delete twins behind the first one's cache:
// the first one's PUTs still create, replace and refuse as the store says.
func TestStaleCachePut(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1") // cached by e.g
	other, err := New(e.g.cfg, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteTwin(ctx, "r1", "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	tw, err := e.g.PutTwin(ctx, "r1", []byte(roomBody), "*", trace)
	if err != nil {
		t.Fatalf("If-None-Match * on a twin deleted behind the cache: %v", err)
	}
	e.wantEvent("Microsoft.DigitalTwins.Twin.Create", "r1", roomDoc("r1", tw.ETag))

	if _, err := other.PutTwin(ctx, "r2", []byte(roomBody), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	_, err = e.g.PutTwin(ctx, "r2", []byte(roomBody), "*", trace)
	wantErr(t, err, twin.KindPreconditionFailed, "")
	if _, err := e.g.PutTwin(ctx, "r2", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{},"name":"Lab"}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.wantEvent("Microsoft.DigitalTwins.Twin.Update", "r2", `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"remove","path":"/temp"},{"op":"remove","path":"/therm/setPoint"}]}`)
}

// TestEmptyPatchStaleCache has a second Service change and delete a twin behind the first
// one's cache: an empty patch of the first one, of the twin or of a component, answers as the
// store says: the current ETag, 412 for an If-Match on an old one, and 404 once the twin is
// gone.
func TestEmptyPatchStaleCache(t *testing.T) {
	for _, component := range []string{"", "therm"} {
		t.Run("component="+component, func(t *testing.T) {
			ctx := context.Background()
			e := newRoomEnv(t)
			old := e.putRoom("r1").ETag // cached by e.g
			other, err := New(e.g.cfg, e.st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/hum","value":1}]`), "", trace); err != nil {
				t.Fatal(err)
			}
			cur, err := other.Twin(ctx, "r1")
			if err != nil {
				t.Fatal(err)
			}
			patch := func(ifMatch string) (string, error) {
				if component == "" {
					return e.g.PatchTwin(ctx, "r1", []byte(`[]`), ifMatch, trace)
				}
				return e.g.PatchComponent(ctx, "r1", component, []byte(`[]`), ifMatch, trace)
			}
			for _, ifMatch := range []string{"", "*", cur.ETag} {
				if etag, err := patch(ifMatch); err != nil || etag != cur.ETag {
					t.Errorf("empty patch, If-Match %q = %q, %v; want the current ETag %q", ifMatch, etag, err, cur.ETag)
				}
			}
			_, err = patch(old)
			wantErr(t, err, twin.KindPreconditionFailed, "")

			if err := other.DeleteTwin(ctx, "r1", "", trace); err != nil {
				t.Fatal(err)
			}
			_, err = patch("")
			wantErr(t, err, twin.KindTwinNotFound, "")
			if n := len(e.events()); n != 2 {
				t.Errorf("%d events; want 2, the other Service's update and delete", n)
			}
		})
	}
}
