package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
)

// API keys (store.Keys) are read once per authenticated request at most (package auth caches
// them) and written rarely.

var _ store.Keys = (*Store)(nil)

// ViewKeys implements store.Keys: fn reads one snapshot, as View does.
func (s *Store) ViewKeys(ctx context.Context, fn func(store.KeyReader) error) error {
	return s.view(ctx, "keys view", func(tx pgx.Tx) error {
		return fn(&keyReader{q: txQuerier{ctx: ctx, tx: tx}})
	})
}

// UpdateKeys implements store.Keys. fn runs on the writer goroutine like any Update's fn,
// inside its own savepoint of a group-committed transaction.
func (s *Store) UpdateKeys(ctx context.Context, fn func(store.KeyWriter) error) error {
	return s.update(ctx, func(store.Writer) error {
		return fn(&keyWriter{keyReader: keyReader{q: &s.w}, w: &s.w})
	})
}

// keyReader implements store.KeyReader over q.
type keyReader struct {
	q querier
}

var _ store.KeyReader = (*keyReader)(nil)

const keyColumns = "id, name, role, hash, created, expires"

func scanKey(sc scanner) (store.Key, error) {
	var (
		k                store.Key
		created, expires string
	)
	if err := sc.Scan(&k.ID, &k.Name, &k.Role, &k.Hash, &created, &expires); err != nil {
		return store.Key{}, err
	}
	var err error
	if k.Created, err = parseTime(created); err != nil {
		return store.Key{}, fmt.Errorf("parse creation time of key %q: %w", k.ID, err)
	}
	if expires != "" {
		if k.Expires, err = parseTime(expires); err != nil {
			return store.Key{}, fmt.Errorf("parse expiry of key %q: %w", k.ID, err)
		}
	}
	return k, nil
}

// Key implements store.KeyReader.
func (r *keyReader) Key(id string) (store.Key, error) {
	return one(r.q, fmt.Sprintf("key %q", id), scanKey, "SELECT "+keyColumns+" FROM api_keys WHERE id = $1", id)
}

// Keys implements store.KeyReader.
func (r *keyReader) Keys() ([]store.Key, error) {
	return list(r.q, "keys", scanKey, "SELECT "+keyColumns+" FROM api_keys ORDER BY id")
}

// keyWriter implements store.KeyWriter on the writer goroutine, inside the current fn's
// savepoint.
type keyWriter struct {
	keyReader
	w *writer
}

var _ store.KeyWriter = (*keyWriter)(nil)

// CreateKey implements store.KeyWriter.
func (k *keyWriter) CreateKey(key store.Key) error {
	var expires string
	if !key.Expires.IsZero() {
		expires = formatTime(key.Expires)
	}
	tag, err := k.w.exec("INSERT INTO api_keys ("+keyColumns+") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
		key.ID, key.Name, key.Role, blob(key.Hash), formatTime(key.Created), expires)
	if err != nil {
		return fmt.Errorf("create key %q: %w", key.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("create key %q: %w", key.ID, store.ErrExists)
	}
	return nil
}

// DeleteKey implements store.KeyWriter.
func (k *keyWriter) DeleteKey(id string) error {
	return k.w.change(fmt.Sprintf("delete key %q", id), "DELETE FROM api_keys WHERE id = $1", id)
}
