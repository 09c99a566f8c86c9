package source

import (
	"context"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/redact"
)

// sanitized returns src with the errors it reports (its states' and Run's) as scrub shows
// them (see redact.Scrubber.Error); a nil scrub leaves src as it is. A Lagger stays one.
func sanitized(src ingress.Source, scrub *redact.Scrubber) ingress.Source {
	if scrub == nil {
		return src
	}
	s := &sanitizedSource{src: src, scrub: scrub}
	if l, ok := src.(ingress.Lagger); ok {
		return &sanitizedLagger{sanitizedSource: s, lagger: l}
	}
	return s
}

// sanitizedSource is a source whose errors are scrubbed.
type sanitizedSource struct {
	src   ingress.Source
	scrub *redact.Scrubber
}

// Run implements ingress.Source.
func (s *sanitizedSource) Run(ctx context.Context, h ingress.Handler) error {
	return s.scrub.Error(s.src.Run(ctx, sanitizedHandler{h, s.scrub}))
}

// sanitizedLagger is a sanitizedSource of a Lagger.
type sanitizedLagger struct {
	*sanitizedSource
	lagger ingress.Lagger
}

// Lag implements ingress.Lagger.
func (s *sanitizedLagger) Lag() (int64, bool) { return s.lagger.Lag() }

// sanitizedHandler passes a source's states on with their errors scrubbed.
type sanitizedHandler struct {
	ingress.Handler
	scrub *redact.Scrubber
}

// State implements ingress.Handler.
func (h sanitizedHandler) State(s ingress.State, err error) { h.Handler.State(s, h.scrub.Error(err)) }
