package sink_test

import (
	"errors"
	"testing"

	"github.com/twinflow/twinflow/internal/sink"
)

// TestUnauthorized checks that a refused credential stays recognisable through Permanent and
// further wrapping, and keeps its message.
func TestUnauthorized(t *testing.T) {
	if sink.Unauthorized(nil) != nil {
		t.Error("Unauthorized(nil) != nil")
	}
	cause := errors.New("webhook answered 401 Unauthorized")
	err := sink.Permanent(sink.Unauthorized(cause))
	if !errors.Is(err, sink.ErrUnauthorized) || !errors.Is(err, cause) || !sink.IsPermanent(err) {
		t.Errorf("%v: ErrUnauthorized %v, cause %v, permanent %v", err,
			errors.Is(err, sink.ErrUnauthorized), errors.Is(err, cause), sink.IsPermanent(err))
	}
	if want := "permanent: webhook answered 401 Unauthorized (the destination refused the credentials)"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if errors.Is(sink.Permanent(cause), sink.ErrUnauthorized) {
		t.Error("a plain error is ErrUnauthorized")
	}
}
