package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// KeyPrefix starts the text of every API key, so that a key is told from a token at a glance,
// by people and by secret scanners.
const KeyPrefix = "tfk_"

// An API key's text is KeyPrefix, its id (idBytes random bytes in hex), "_" and its secret
// (secretBytes random bytes, base64url without padding). The store keeps the id and the
// SHA-256 hash of the secret: 256 random bits need no slow hash, since nobody can guess
// them, and a stolen store reveals no key.
const (
	idBytes     = 8
	secretBytes = 32
	idLen       = 2 * idBytes
	secretLen   = (8*secretBytes + 5) / 6
)

// MaxKeyNameLength bounds a key's name, in characters.
const MaxKeyNameLength = 128

// keyCacheTTL is how long a key read from the store is used without reading it again: a key
// revoked through another Keys over the same store (another node) is refused at most this
// long after. Keys revokes its own keys at once.
const keyCacheTTL = 5 * time.Second

// maxCachedKeys bounds the cache: past it, the cache starts over, so that requests with made-up
// key ids cannot grow it.
const maxCachedKeys = 4096

// Key describes an API key; its secret is shown once, when Create makes it, and never kept.
type Key struct {
	ID   string
	Name string
	Role Role
	// Created is when the key was made; Expires when it stops being accepted, zero for never.
	Created time.Time
	Expires time.Time
}

// Expired reports whether the key is no longer accepted at now.
func (k Key) Expired(now time.Time) bool { return !k.Expires.IsZero() && !now.Before(k.Expires) }

// Keys creates, lists, revokes and checks API keys kept in a store. It is safe for
// concurrent use.
type Keys struct {
	store store.Keys
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey
	// revoked counts revocations, so that a lookup that read a key before it was revoked
	// does not cache it after.
	revoked uint64
}

// cachedKey is a key as the store held it at read, or its absence (found false).
type cachedKey struct {
	key   store.Key
	found bool
	read  time.Time
}

// NewKeys returns the keys kept in st, checked against the clock now (nil means time.Now).
func NewKeys(st store.Keys, now func() time.Time) *Keys {
	if now == nil {
		now = time.Now
	}
	return &Keys{store: st, now: now, cache: make(map[string]cachedKey)}
}

// Now returns the time on the clock keys are checked against.
func (k *Keys) Now() time.Time { return k.now() }

// Create makes a key with the given name and role that expires at expires (zero for never),
// and returns its text, which is shown this once, with its description. It fails with a
// *twin.Error of KindInvalidArgument for a name too long or not UTF-8, a role of none, or an
// expiry that is not in the future.
func (k *Keys) Create(ctx context.Context, name string, role Role, expires time.Time) (string, Key, error) {
	now := k.now()
	switch {
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxKeyNameLength:
		return "", Key{}, invalidKey("The key's name must be UTF-8 of at most %d characters.", MaxKeyNameLength)
	case role < RoleReader || role > RoleAdmin:
		return "", Key{}, invalidKey("The key's role must be reader, owner or admin.")
	case !expires.IsZero() && !expires.After(now):
		return "", Key{}, invalidKey("The key's expiry %s is not in the future.", expires.UTC().Format(time.RFC3339))
	}
	var raw [idBytes + secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Key{}, fmt.Errorf("make a key: %w", err)
	}
	id := hex.EncodeToString(raw[:idBytes])
	secret := base64.RawURLEncoding.EncodeToString(raw[idBytes:])
	hash := sha256.Sum256([]byte(secret))
	sk := store.Key{ID: id, Name: name, Role: role.String(), Hash: hash[:], Created: now.UTC(), Expires: expires.UTC()}
	if err := k.store.UpdateKeys(ctx, func(w store.KeyWriter) error { return w.CreateKey(sk) }); err != nil {
		return "", Key{}, fmt.Errorf("create key: %w", err)
	}
	return KeyPrefix + id + "_" + secret, describe(sk), nil
}

// invalidKey is the error of a key definition the server refuses.
func invalidKey(format string, args ...any) *twin.Error {
	return &twin.Error{Kind: twin.KindInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// keyNotFound is the error of a key id that names no key.
func keyNotFound(id string) *twin.Error {
	return &twin.Error{Kind: twin.KindKeyNotFound, Message: fmt.Sprintf("There is no API key with the id %s.", id)}
}

// describe returns the description of a stored key. A role the store holds that this build
// does not know grants nothing.
func describe(sk store.Key) Key {
	role, err := ParseRole(sk.Role)
	if err != nil {
		role = RoleNone
	}
	return Key{ID: sk.ID, Name: sk.Name, Role: role, Created: sk.Created, Expires: sk.Expires}
}

// List returns every key, ordered by id, expired ones included.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	var out []Key
	err := k.store.ViewKeys(ctx, func(r store.KeyReader) error {
		sks, err := r.Keys()
		for _, sk := range sks {
			out = append(out, describe(sk))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// Get returns the key id; a missing one is a *twin.Error of KindKeyNotFound.
func (k *Keys) Get(ctx context.Context, id string) (Key, error) {
	var sk store.Key
	err := k.store.ViewKeys(ctx, func(r store.KeyReader) (err error) {
		sk, err = r.Key(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Key{}, keyNotFound(id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("read key %q: %w", id, err)
	}
	return describe(sk), nil
}

// Revoke deletes the key id, which this Keys refuses from then on; a missing one is a
// *twin.Error of KindKeyNotFound. id may also be the key's whole text.
func (k *Keys) Revoke(ctx context.Context, id string) error {
	if kid, _, ok := splitKey(id); ok {
		id = kid
	}
	err := k.store.UpdateKeys(ctx, func(w store.KeyWriter) error { return w.DeleteKey(id) })
	k.mu.Lock()
	k.revoked++
	delete(k.cache, id)
	k.mu.Unlock()
	if errors.Is(err, store.ErrNotFound) {
		return keyNotFound(id)
	}
	if err != nil {
		return fmt.Errorf("revoke key %q: %w", id, err)
	}
	return nil
}

// splitKey returns the id and secret of a key's text, ok false when text is not shaped as one.
func splitKey(text string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(text, KeyPrefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", "", false
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", false
	}
	return id, secret, true
}

// verify returns the identity of the key whose text is text. It fails with a *twin.Error of
// KindUnauthorized for text that is not a key's, a key that does not exist (or was revoked),
// or one that expired. The secret is compared by its hash in constant time.
func (k *Keys) verify(ctx context.Context, text string) (Identity, error) {
	id, secret, ok := splitKey(text)
	if !ok {
		return Identity{}, unauthorized(errors.New("the API key is malformed"))
	}
	sk, found, err := k.lookup(ctx, id)
	if err != nil {
		return Identity{}, err
	}
	// Ids are not secret; secrets are compared by their hashes, in constant time.
	hash := sha256.Sum256([]byte(secret))
	if !found || subtle.ConstantTimeCompare(hash[:], sk.Hash) != 1 {
		return Identity{}, unauthorized(errors.New("the API key is not known: it is wrong or was revoked"))
	}
	key := describe(sk)
	if now := k.now(); key.Expired(now) {
		return Identity{}, unauthorized(fmt.Errorf("the API key %s expired at %s", id, key.Expires.UTC().Format(time.RFC3339)))
	}
	name := id
	if key.Name != "" {
		name = key.Name + " (" + id + ")"
	}
	return Identity{Name: name, Role: key.Role, Method: MethodKey}, nil
}

// lookup returns the stored key id, from the cache while it is fresh.
func (k *Keys) lookup(ctx context.Context, id string) (store.Key, bool, error) {
	now := k.now()
	k.mu.Lock()
	c, ok := k.cache[id]
	revoked := k.revoked
	k.mu.Unlock()
	if ok && now.Sub(c.read) < keyCacheTTL && !now.Before(c.read) {
		return c.key, c.found, nil
	}
	err := k.store.ViewKeys(ctx, func(r store.KeyReader) (err error) {
		c.key, err = r.Key(id)
		return err
	})
	c.found, c.read = err == nil, now
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Key{}, false, fmt.Errorf("read key %q: %w", id, err)
	}
	k.mu.Lock()
	if len(k.cache) >= maxCachedKeys {
		clear(k.cache)
	}
	if k.revoked == revoked {
		k.cache[id] = c
	}
	k.mu.Unlock()
	return c.key, c.found, nil
}
