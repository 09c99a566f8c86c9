package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestKeys(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	keys := newKeys(t, c.Now)
	a, err := auth.New(auth.Config{Required: true, WriteError: writeError, Now: c.Now}, keys, nil)
	if err != nil {
		t.Fatal(err)
	}

	ingest, ingestKey, err := keys.Create(ctx, "ingest", auth.RoleOwner, time.Time{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !strings.HasPrefix(ingest, auth.KeyPrefix) || len(ingest) != len(auth.KeyPrefix)+16+1+43 {
		t.Errorf("key text %q is not shaped as a key", ingest)
	}
	if ingestKey.Name != "ingest" || ingestKey.Role != auth.RoleOwner || !ingestKey.Expires.IsZero() || !strings.Contains(ingest, ingestKey.ID) {
		t.Errorf("key %+v for text %q", ingestKey, ingest)
	}
	brief, briefKey, err := keys.Create(ctx, "", auth.RoleReader, c.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	id, err := authenticate(a, ingest)
	if err != nil || id != (auth.Identity{Name: "ingest (" + ingestKey.ID + ")", Role: auth.RoleOwner, Method: auth.MethodKey}) {
		t.Errorf("the ingest key authenticates as %+v, %v", id, err)
	}
	id, err = authenticate(a, brief)
	if err != nil || id != (auth.Identity{Name: briefKey.ID, Role: auth.RoleReader, Method: auth.MethodKey}) {
		t.Errorf("the unnamed key authenticates as %+v, %v", id, err)
	}

	// A wrong secret under a real id, and made-up or malformed keys.
	last := "A"
	if strings.HasSuffix(ingest, "A") {
		last = "B"
	}
	wrong := ingest[:len(ingest)-1] + last
	_, err = authenticate(a, wrong)
	wantUnauthorized(t, err, "the API key is not known")
	_, err = authenticate(a, auth.KeyPrefix+"0123456789abcdef_"+strings.Repeat("x", 43))
	wantUnauthorized(t, err, "the API key is not known")
	_, err = authenticate(a, auth.KeyPrefix+"0123456789abcdeg_"+strings.Repeat("x", 43))
	wantUnauthorized(t, err, "malformed")
	_, err = authenticate(a, ingest+"x")
	wantUnauthorized(t, err, "malformed")

	list, err := keys.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %+v, %v", list, err)
	}
	got, err := keys.Get(ctx, briefKey.ID)
	if err != nil || got.Role != auth.RoleReader || !got.Expires.Equal(briefKey.Expires) {
		t.Errorf("Get: %+v, %v; want %+v", got, err, briefKey)
	}

	// The key expires.
	c.Advance(time.Hour)
	_, err = authenticate(a, brief)
	wantUnauthorized(t, err, "the API key "+briefKey.ID+" expired at ")

	// A revoked key is refused at once, though it was cached a moment ago.
	if err := keys.Revoke(ctx, ingestKey.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, err = authenticate(a, ingest)
	wantUnauthorized(t, err, "the API key is not known")
	var te *twin.Error
	if err := keys.Revoke(ctx, ingestKey.ID); !errors.As(err, &te) || te.Kind != twin.KindKeyNotFound {
		t.Errorf("revoking a revoked key: %v, want KeyNotFound", err)
	}
	if _, err := keys.Get(ctx, ingestKey.ID); !errors.As(err, &te) || te.Kind != twin.KindKeyNotFound {
		t.Errorf("reading a revoked key: %v, want KeyNotFound", err)
	}
	// Revoke takes the key's whole text too.
	if err := keys.Revoke(ctx, brief); err != nil {
		t.Errorf("Revoke by the key's text: %v", err)
	}
	if list, _ := keys.List(ctx); len(list) != 0 {
		t.Errorf("keys left after revoking both: %+v", list)
	}
}

func TestCreateKeyRefusesBadDefinitions(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	keys := newKeys(t, c.Now)
	for _, tc := range []struct {
		name    string
		role    auth.Role
		expires time.Time
		reason  string
	}{
		{"x", auth.RoleNone, time.Time{}, "role must be reader, owner or admin"},
		{"x", auth.Role(7), time.Time{}, "role must be reader, owner or admin"},
		{strings.Repeat("n", auth.MaxKeyNameLength+1), auth.RoleReader, time.Time{}, "at most 128 characters"},
		{"\xff", auth.RoleReader, time.Time{}, "UTF-8"},
		{"x", auth.RoleReader, c.Now(), "is not in the future"},
	} {
		_, _, err := keys.Create(ctx, tc.name, tc.role, tc.expires)
		var te *twin.Error
		if !errors.As(err, &te) || te.Kind != twin.KindInvalidArgument || !strings.Contains(te.Message, tc.reason) {
			t.Errorf("Create(%q, %v, %v) = %v, want InvalidArgument saying %q", tc.name, tc.role, tc.expires, err, tc.reason)
		}
	}
	if list, _ := keys.List(ctx); len(list) != 0 {
		t.Errorf("refused definitions left keys: %+v", list)
	}
}
