package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/")

// TestTranscripts replays each testdata/<name>.http file against a fresh server and compares
// the request → response transcript with testdata/<name>.golden.
//
// A .http file is a sequence of requests, each starting with a "### title" line, then
// optional "# " comment lines (copied to the transcript; they cite the evidence for ADT's
// behaviour), the request line (METHOD /path?query), header lines, an empty line and the
// body. A path without
// a query gets api-version=2023-10-31. A request line
// of "GET {{nextLink}}" follows the nextLink of the previous response. Generated UUIDs (ETags)
// are numbered in order of appearance and written as uuid-N, and requests may name them the
// same way (If-Match: W/"uuid-3"). The twin service runs on a ticking clock whose readings are
// numbered the same way (see clockPattern). The jobs*.http files run against a server with a
// job runner that does not run its jobs, so they stay as the requests leave them (see
// newJobsEnv).
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.http"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.http transcripts")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".http")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reqs, err := parseTranscript(string(src))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			cfg := Config{ModelPageSize: 100, RelationshipPageSize: 2}
			var e *env
			if strings.HasPrefix(name, "jobs") {
				e, _ = newJobsEnv(t, cfg)
			} else {
				e = newEnv(t, cfg)
			}
			got := e.replay(reqs)
			golden := strings.TrimSuffix(file, ".http") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("transcript differs from %s (run go test -update to accept):\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

// transcriptRequest is one request of a .http file.
type transcriptRequest struct {
	title    string
	comments []string
	method   string
	target   string
	header   [][2]string
	body     string
}

func parseTranscript(src string) ([]transcriptRequest, error) {
	var reqs []transcriptRequest
	blocks := strings.Split("\n"+src, "\n### ")
	for _, block := range blocks[1:] {
		title, rest, _ := strings.Cut(block, "\n")
		rest = strings.TrimLeft(rest, "\n")
		var comments []string
		for strings.HasPrefix(rest, "#") {
			var c string
			c, rest, _ = strings.Cut(rest, "\n")
			comments = append(comments, c)
		}
		reqLine, rest, _ := strings.Cut(rest, "\n")
		method, target, ok := strings.Cut(reqLine, " ")
		if !ok {
			return nil, fmt.Errorf("request %q: bad request line %q", title, reqLine)
		}
		r := transcriptRequest{title: title, comments: comments, method: method, target: target}
		headers, body, _ := strings.Cut(rest, "\n\n")
		if strings.HasPrefix(rest, "\n") {
			headers, body = "", rest
		}
		for line := range strings.Lines(headers) {
			line = strings.TrimRight(line, "\n")
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("request %q: bad header line %q", title, line)
			}
			r.header = append(r.header, [2]string{k, strings.TrimSpace(v)})
		}
		r.body = strings.TrimSpace(body)
		reqs = append(reqs, r)
	}
	return reqs, nil
}

var (
	uuidPattern     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	uuidPlaceholder = regexp.MustCompile(`uuid-[0-9]+`)
	// clockPattern matches the times the test clock hands out (see tickingClock). How often
	// the twin service reads its clock is its own business, so transcripts number the distinct
	// times in order of appearance in the fractional digits: equal times stay equal, later
	// writes get larger numbers, and the format stays visible.
	clockPattern = regexp.MustCompile(regexp.QuoteMeta(clockPrefix) + `[0-9]{7}`)
	// shownHeaders are the response headers a transcript records.
	shownHeaders = []string{"Allow", "Content-Type", "ETag", "Operation-Id", "Operation-Location", "X-Ms-Error-Code"}
)

// clockPrefix is the part of every test clock reading that does not change.
const clockPrefix = "2026-01-02T03:04:05."

// nextLinkPlaceholder, as a request target, follows the previous response's nextLink.
const nextLinkPlaceholder = "{{nextLink}}"

// replay runs reqs in order and returns the transcript.
func (e *env) replay(reqs []transcriptRequest) string {
	e.t.Helper()
	names := map[string]string{} // real UUID → uuid-N
	reals := map[string]string{} // uuid-N → real UUID
	times := map[string]string{} // clock time → its numbered stand-in
	normalize := func(s string) string {
		for from, to := range e.redact {
			s = strings.ReplaceAll(s, from, to)
		}
		s = uuidPattern.ReplaceAllStringFunc(s, func(u string) string {
			if n, ok := names[u]; ok {
				return n
			}
			n := "uuid-" + strconv.Itoa(len(names)+1)
			names[u], reals[n] = n, u
			return n
		})
		return clockPattern.ReplaceAllStringFunc(s, func(c string) string {
			if n, ok := times[c]; ok {
				return n
			}
			n := fmt.Sprintf("%s%07d", clockPrefix, len(times)+1)
			times[c] = n
			return n
		})
	}
	denormalize := func(s string) string {
		return uuidPlaceholder.ReplaceAllStringFunc(s, func(n string) string {
			if u, ok := reals[n]; ok {
				return u
			}
			e.t.Fatalf("request names %s before any response produced it", n)
			return n
		})
	}
	var out strings.Builder
	var lastNext string
	for _, rq := range reqs {
		fmt.Fprintf(&out, "### %s\n", rq.title)
		for _, c := range rq.comments {
			fmt.Fprintf(&out, "%s\n", c)
		}
		fmt.Fprintf(&out, "%s %s\n", rq.method, rq.target)
		target := denormalize(rq.target)
		if target == nextLinkPlaceholder {
			if lastNext == "" {
				e.t.Errorf("%s: no nextLink to follow", rq.title)
				out.WriteString("\n(no nextLink to follow)\n\n")
				continue
			}
			target = e.local(lastNext)
		}
		// env.do sets the usual Content-Type for a body; a request's own header overrides it,
		// and an empty one removes it.
		var headers []string
		for _, h := range rq.header {
			fmt.Fprintf(&out, "%s\n", strings.TrimSpace(h[0]+": "+h[1]))
			headers = append(headers, h[0], denormalize(h[1]))
		}
		if rq.body != "" {
			fmt.Fprintf(&out, "\n%s\n", rq.body)
		}
		resp := e.do(rq.method, target, denormalize(rq.body), headers...)

		fmt.Fprintf(&out, "\nHTTP %d\n", resp.status)
		for _, h := range shownHeaders {
			if v := resp.header.Get(h); v != "" {
				fmt.Fprintf(&out, "%s: %s\n", h, normalize(v))
			}
		}
		lastNext = ""
		if len(resp.body) > 0 {
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, resp.body, "", "  "); err != nil {
				e.t.Fatalf("%s: response body is not JSON: %s", rq.title, resp.body)
			}
			fmt.Fprintf(&out, "\n%s\n", normalize(pretty.String()))
			var p struct{ NextLink string }
			if json.Unmarshal(resp.body, &p) == nil {
				lastNext = p.NextLink
			}
		}
		out.WriteString("\n")
	}
	return out.String()
}

// firstDiff shows the first line where want and got differ, with a little context.
func firstDiff(want, got string) string {
	w := slices.Collect(strings.Lines(want))
	g := slices.Collect(strings.Lines(got))
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			var b strings.Builder
			sc := bufio.NewScanner(strings.NewReader(strings.Join(g[max(0, i-6):i], "")))
			for sc.Scan() {
				fmt.Fprintf(&b, "  %s\n", sc.Text())
			}
			fmt.Fprintf(&b, "line %d:\n- want %q\n+ got  %q\n", i+1, wl, gl)
			return b.String()
		}
	}
	return "(no difference)"
}
