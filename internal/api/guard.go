package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/twin"
)

// GuardConfig configures Guard. A zero field sets no limit.
type GuardConfig struct {
	// MaxHeaderBytes is the largest request line plus header fields, in bytes, that Guard
	// lets through. net/http must be allowed to read more (see ServerMaxHeaderBytes), or it
	// answers first, in plain text.
	MaxHeaderBytes int
	// BodyReadTimeout bounds the time from the moment Guard sees a request to the end of
	// its body.
	BodyReadTimeout time.Duration
}

// ServerMaxHeaderBytes returns the http.Server.MaxHeaderBytes that lets every request Guard
// would refuse for its header size reach Guard, so that the refusal carries ADT's error body:
// twice MaxHeaderBytes, and at least net/http's own default of 1 MiB. Beyond that net/http
// stops reading and answers 431 itself.
func (c GuardConfig) ServerMaxHeaderBytes() int {
	return max(2*c.MaxHeaderBytes, http.DefaultMaxHeaderBytes)
}

// Guard returns next behind the checks every request passes before anything routes it, each
// answered with ADT's error body:
//
//   - a path with an empty ("//"), "." or ".." segment is 400 InvalidArgument. Paths are
//     never cleaned, so ServeMux never answers them with a redirect, and an id is never
//     silently turned into another;
//   - a request line and header fields over MaxHeaderBytes are 431
//     RequestHeaderFieldsTooLarge;
//   - a body must arrive in full within BodyReadTimeout: a read past that fails with 408
//     RequestTimeout, and a body that cannot be read (malformed chunked encoding, a
//     connection closed early) with 400 InvalidArgument, both as *twin.Error so the
//     handler's error translator answers them. Once the body has been read to its end,
//     the deadline is lifted, so a handler may take its time answering.
//
// Guard is safe for concurrent use.
func Guard(cfg GuardConfig, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !canonicalPath(r) {
			WriteError(w, twin.InvalidArgument(fmt.Sprintf(
				"The request path %q has an empty, \".\" or \"..\" segment. Paths are not normalized: send the path of the resource itself.",
				r.URL.EscapedPath())))
			return
		}
		if n := headerBytes(r); cfg.MaxHeaderBytes > 0 && n > cfg.MaxHeaderBytes {
			WriteError(w, &twin.Error{Kind: twin.KindHeaderTooLarge, Message: fmt.Sprintf(
				"The request line and header fields are %d bytes, more than the limit of %d.", n, cfg.MaxHeaderBytes)})
			return
		}
		if cfg.BodyReadTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			// A writer that cannot set deadlines (a test recorder) reads the body without one.
			if rc.SetReadDeadline(time.Now().Add(cfg.BodyReadTimeout)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: cfg.BodyReadTimeout}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// canonicalPath reports whether r's escaped path starts with "/" and has no empty segment
// (but for a final one: "/a/" is a path of its own, which no route serves) and no "." or
// ".." segment, so that ServeMux, which cleans every path but CONNECT's, would leave it as it
// is. An absolute-form target without a path ("GET http://host") has an empty one.
func canonicalPath(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p, "/")
	for i, s := range segs[1:] {
		if s == "." || s == ".." || (s == "" && i+2 < len(segs)) {
			return false
		}
	}
	return true
}

// headerBytes returns the size of r's request line and header fields as they were sent,
// give or take optional white space: what net/http's MaxHeaderBytes counts.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" { // net/http moves Host out of Header
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// deadlineBody is a request body read under the connection's read deadline, which it lifts
// once the body has been read to its end. It turns read failures into the *twin.Error the
// client is answered with.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// Lift the deadline: net/http now reads ahead on the connection to notice the
		// client going away, and that read must not time out while the handler works.
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = &twin.Error{Kind: twin.KindRequestTimeout, Message: fmt.Sprintf(
			"The request body did not arrive within %v.", b.timeout)}
	default:
		err = twin.InvalidArgument("The request body could not be read: its chunked encoding is malformed or it ended early.")
	}
	return n, err
}
