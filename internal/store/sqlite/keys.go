package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// API keys (store.Keys) live in the table of schema version 6. They are read once per
// authenticated request at most (package auth caches them) and written rarely, so their
// statements run as text like delivery state's.

var _ store.Keys = (*Store)(nil)

// ViewKeys implements store.Keys: fn reads one read transaction, as View does.
func (s *Store) ViewKeys(ctx context.Context, fn func(store.KeyReader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin keys view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&keyReader{deliveryReader{ctx: ctx, q: tx}})
}

// UpdateKeys implements store.Keys. fn runs on the writer goroutine like any Update's fn,
// inside its own savepoint of a group-committed transaction; it commits durably or not at all.
func (s *Store) UpdateKeys(ctx context.Context, fn func(store.KeyWriter) error) error {
	return s.Update(ctx, func(store.Writer) error {
		return fn(&keyWriter{keyReader: keyReader{deliveryReader{ctx: s.w.ctx, q: s.conn}}, w: &s.w})
	})
}

// keyReader implements store.KeyReader. It runs its queries as the delivery reader does.
type keyReader struct {
	d deliveryReader
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
	if k.Created, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return store.Key{}, fmt.Errorf("parse creation time of key %q: %w", k.ID, err)
	}
	if expires != "" {
		if k.Expires, err = time.Parse(time.RFC3339Nano, expires); err != nil {
			return store.Key{}, fmt.Errorf("parse expiry of key %q: %w", k.ID, err)
		}
	}
	return k, nil
}

// Key implements store.KeyReader.
func (r *keyReader) Key(id string) (store.Key, error) {
	return deliveryOne(&r.d, fmt.Sprintf("key %q", id), scanKey,
		"SELECT "+keyColumns+" FROM api_keys WHERE id = ?", id)
}

// Keys implements store.KeyReader.
func (r *keyReader) Keys() ([]store.Key, error) {
	return deliveryList(&r.d, "keys", scanKey, "SELECT "+keyColumns+" FROM api_keys ORDER BY id")
}

// keyWriter implements store.KeyWriter on the writer goroutine. Its changes run inside the
// current fn's savepoint, opened by w.
type keyWriter struct {
	keyReader
	w *writer
}

var _ store.KeyWriter = (*keyWriter)(nil)

// CreateKey implements store.KeyWriter.
func (k *keyWriter) CreateKey(key store.Key) error {
	var expires string
	if !key.Expires.IsZero() {
		expires = key.Expires.UTC().Format(time.RFC3339Nano)
	}
	res, err := k.w.execIn(k.d.q, "INSERT INTO api_keys ("+keyColumns+") VALUES (?, ?, ?, ?, ?, ?)"+
		" ON CONFLICT (id) DO NOTHING",
		key.ID, key.Name, key.Role, key.Hash, key.Created.UTC().Format(time.RFC3339Nano), expires)
	if err != nil {
		return fmt.Errorf("create key %q: %w", key.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return k.w.fail(fmt.Errorf("create key %q: %w", key.ID, err))
	}
	if n == 0 {
		return fmt.Errorf("create key %q: %w", key.ID, store.ErrExists)
	}
	return nil
}

// DeleteKey implements store.KeyWriter.
func (k *keyWriter) DeleteKey(id string) error {
	return k.w.changeIn(k.d.q, fmt.Sprintf("delete key %q", id), "DELETE FROM api_keys WHERE id = ?", id)
}
