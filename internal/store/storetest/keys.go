package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// KeyStore is a store that also keeps API keys.
type KeyStore interface {
	store.Store
	store.Keys
}

// RunKeys runs the contract suite of store.Keys, opening a fresh empty store with open for each
// subtest and closing it afterwards.
func RunKeys(t *testing.T, open func(t *testing.T) KeyStore) {
	tests := []testCase[KeyStore]{
		{"Keys", testKeys},
		{"CreateKeyRefusesExisting", testCreateKeyRefusesExisting},
		{"FailedKeysUpdateRollsBack", testFailedKeysUpdate},
	}
	runCases(t, open, tests)
}

func updateKeys(t *testing.T, s KeyStore, fn func(store.KeyWriter) error) {
	t.Helper()
	if err := s.UpdateKeys(context.Background(), fn); err != nil {
		t.Fatalf("UpdateKeys: %v", err)
	}
}

func viewKeys(t *testing.T, s KeyStore, fn func(store.KeyReader) error) {
	t.Helper()
	if err := s.ViewKeys(context.Background(), fn); err != nil {
		t.Fatalf("ViewKeys: %v", err)
	}
}

// sameKey reports whether a and b are the same key, their times compared as instants.
func sameKey(a, b store.Key) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Role == b.Role && bytes.Equal(a.Hash, b.Hash) &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires)
}

func testKeys(t *testing.T, s KeyStore) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	keys := []store.Key{
		{ID: "b", Name: "ingest", Role: "owner", Hash: bytes.Repeat([]byte{1}, 32), Created: created},
		{ID: "a", Name: "dashboard", Role: "reader", Hash: bytes.Repeat([]byte{2}, 32), Created: created,
			Expires: created.Add(24 * time.Hour)},
		// A key whose times carry an offset comes back as the same instants.
		{ID: "c", Name: "", Role: "admin", Hash: bytes.Repeat([]byte{3}, 32),
			Created: created.In(time.FixedZone("x", 3600)), Expires: created.Add(time.Hour).In(time.FixedZone("y", -7200))},
	}
	updateKeys(t, s, func(w store.KeyWriter) error {
		for _, k := range keys {
			if err := w.CreateKey(k); err != nil {
				return err
			}
		}
		// An Update sees its own writes.
		if _, err := w.Key("a"); err != nil {
			return err
		}
		return nil
	})
	viewKeys(t, s, func(r store.KeyReader) error {
		for _, want := range keys {
			got, err := r.Key(want.ID)
			if err != nil {
				t.Fatalf("Key(%q): %v", want.ID, err)
			}
			if !sameKey(got, want) {
				t.Errorf("Key(%q) = %+v, want %+v", want.ID, got, want)
			}
		}
		got, err := r.Keys()
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		var ids []string
		for _, k := range got {
			ids = append(ids, k.ID)
		}
		if !slices.Equal(ids, []string{"a", "b", "c"}) {
			t.Errorf("Keys lists %q, want [a b c] in id order", ids)
		}
		_, err = r.Key("missing")
		wantNotFound(t, `Key("missing")`, err)
		return nil
	})

	updateKeys(t, s, func(w store.KeyWriter) error { return w.DeleteKey("b") })
	err := s.UpdateKeys(context.Background(), func(w store.KeyWriter) error { return w.DeleteKey("b") })
	wantNotFound(t, "DeleteKey of a deleted key", err)
	viewKeys(t, s, func(r store.KeyReader) error {
		_, err := r.Key("b")
		wantNotFound(t, `Key("b") after DeleteKey`, err)
		got, err := r.Keys()
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		if len(got) != 2 {
			t.Errorf("Keys after a delete lists %d keys, want 2", len(got))
		}
		return nil
	})
}

func testCreateKeyRefusesExisting(t *testing.T, s KeyStore) {
	first := store.Key{ID: "k", Name: "first", Role: "owner", Hash: []byte("hash-1"), Created: time.Unix(1, 0).UTC()}
	updateKeys(t, s, func(w store.KeyWriter) error { return w.CreateKey(first) })
	second := first
	second.Name, second.Hash = "second", []byte("hash-2")
	err := s.UpdateKeys(context.Background(), func(w store.KeyWriter) error { return w.CreateKey(second) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateKey of an existing id: got %v, want store.ErrExists", err)
	}
	viewKeys(t, s, func(r store.KeyReader) error {
		got, err := r.Key("k")
		if err != nil {
			t.Fatalf("Key: %v", err)
		}
		if !sameKey(got, first) {
			t.Errorf("the refused CreateKey changed the key: %+v, want %+v", got, first)
		}
		return nil
	})
}

func testFailedKeysUpdate(t *testing.T, s KeyStore) {
	boom := errors.New("boom")
	err := s.UpdateKeys(context.Background(), func(w store.KeyWriter) error {
		if err := w.CreateKey(store.Key{ID: "gone", Role: "reader", Hash: []byte("h"), Created: time.Now()}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateKeys returned %v, want fn's error", err)
	}
	viewKeys(t, s, func(r store.KeyReader) error {
		_, err := r.Key("gone")
		wantNotFound(t, "a key created by a failed UpdateKeys", err)
		return nil
	})
}
