package job

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/twin"
)

// locations resolves the inputBlobUri and outputBlobUri of imports: file: URLs name files
// under the jobs directory, https: URLs resources on allowed hosts.
type locations struct {
	// dir is the jobs directory, absolute and with its symbolic links resolved.
	dir   string
	hosts []string
	http  *http.Client
}

// location is a resolved URL: a file path under the jobs directory, or an https URL.
type location struct {
	path string
	url  string
}

func (l location) String() string {
	if l.path != "" {
		return "file " + l.path
	}
	return l.url
}

// invalid is the ValidationFailed error of a job request.
func invalid(format string, args ...any) *twin.Error {
	return twin.ValidationFailed("The import job request is not valid: " + fmt.Sprintf(format, args...))
}

// resolve checks uri, the input or output (what) of an import, and resolves it.
func (l *locations) resolve(what, uri string) (location, error) {
	u, err := url.Parse(uri)
	if err != nil || uri == "" {
		return location{}, invalid("the %s %q is not a URL.", what, uri)
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		return l.resolveFile(what, u)
	case "https":
		host := strings.ToLower(u.Hostname())
		if !slices.ContainsFunc(l.hosts, func(h string) bool { return strings.EqualFold(h, host) || strings.EqualFold(h, u.Host) }) {
			return location{}, invalid("the %s %s is on the host %s, which is not allowed; allow it in the jobs.allowedHosts setting of the config file.", what, uri, u.Host)
		}
		return location{url: u.String()}, nil
	default:
		return location{}, invalid("the %s %q is neither a file: URL of a file in the jobs directory nor an https: URL.", what, uri)
	}
}

// resolveFile resolves a file: URL: an absolute path in the jobs directory (file:///dir/x),
// or one relative to it (file:x or file:sub/x). The file, or for an output that does not
// exist yet its directory, must be in the jobs directory once symbolic links are followed.
func (l *locations) resolveFile(what string, u *url.URL) (location, error) {
	if l.dir == "" {
		return location{}, invalid("the %s %s is a file: URL, but this server has no jobs directory.", what, u)
	}
	if u.Host != "" && u.Host != "localhost" {
		return location{}, invalid("the %s %s names the host %s; a file: URL names a local file.", what, u, u.Host)
	}
	p := u.Path
	if u.Opaque != "" {
		p = u.Opaque
	}
	if p == "" {
		return location{}, invalid("the %s %s names no file.", what, u)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p)
	}
	p = filepath.Clean(p)
	if !within(l.dir, p) {
		return location{}, invalid("the %s %s is outside the jobs directory %s.", what, u, l.dir)
	}
	real, err := filepath.EvalSymlinks(p)
	switch {
	case err == nil:
		if !within(l.dir, real) {
			return location{}, invalid("the %s %s leads outside the jobs directory %s.", what, u, l.dir)
		}
		info, err := os.Stat(real)
		if err != nil || !info.Mode().IsRegular() {
			return location{}, invalid("the %s %s is not a regular file.", what, u)
		}
		return location{path: real}, nil
	case errors.Is(err, os.ErrNotExist) && what == "outputBlobUri":
		parent, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil || !within(l.dir, parent) {
			return location{}, invalid("the %s %s is not in a directory of the jobs directory %s.", what, u, l.dir)
		}
		return location{path: filepath.Join(parent, filepath.Base(p))}, nil
	default:
		return location{}, invalid("the %s %s does not exist in the jobs directory %s.", what, u, l.dir)
	}
}

// within reports whether path is dir or below it; both are clean and absolute.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

// open opens the input at loc, decompressing it when it is gzip (told by its first bytes),
// and skips its first offset bytes (of the decompressed stream). The caller closes it.
func (l *locations) open(ctx context.Context, loc location, offset int64) (io.ReadCloser, error) {
	var raw io.ReadCloser
	if loc.path != "" {
		f, err := os.Open(loc.path)
		if err != nil {
			return nil, fmt.Errorf("open the input: %w", err)
		}
		raw = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.url, nil)
		if err != nil {
			return nil, fmt.Errorf("request the input: %w", err)
		}
		resp, err := l.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get the input: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("get the input: %s answered %s", loc.url, resp.Status)
		}
		raw = resp.Body
	}
	br := bufio.NewReaderSize(raw, 64<<10)
	head, _ := br.Peek(len(gzipMagic))
	var in io.Reader = br
	closeAll := raw.Close
	if bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("read the gzip input: %w", err)
		}
		in = zr
		closeAll = func() error { return errors.Join(zr.Close(), raw.Close()) }
	} else if f, ok := raw.(*os.File); ok && offset > 0 {
		// A plain file seeks to where the job was.
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			raw.Close()
			return nil, fmt.Errorf("seek the input to %d: %w", offset, err)
		}
		return f, nil
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, in, offset); err != nil {
			closeAll()
			return nil, fmt.Errorf("skip the first %d bytes of the input: %w", offset, err)
		}
	}
	return readCloser{in, closeAll}, nil
}

// readCloser is a Reader with the Close of what it reads from.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
