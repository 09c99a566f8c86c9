package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
)

// limited starts a server with limits and no twins: a request on a twin that passes the
// limits is answered 404 DigitalTwinNotFound (its writes and reads count all the same), one
// that does not 429.
func limited(t *testing.T, limits config.Limits) *Server {
	t.Helper()
	s, _ := start(t, Config{Config: config.Config{Limits: limits}}, nil)
	return s
}

// call sends one API request to s and returns its status, Retry-After and ADT error code.
func call(t *testing.T, s *Server, method, path, body string) (status int, retryAfter, code string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path+"?api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Message-Id", fmt.Sprint(time.Now().UnixNano()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	if resp.StatusCode == http.StatusTooManyRequests && (resp.Header.Get("x-ms-error-code") != e.Error.Code || e.Error.Message == "") {
		t.Errorf("429 with x-ms-error-code %q and body %s", resp.Header.Get("x-ms-error-code"), b)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), e.Error.Code
}

const patch = `[{"op":"add","path":"/temperature","value":1}]`

// TestRateLimits checks the limits of the config file: each refuses what passes it with 429,
// Retry-After and ADT's error, and leaves what it does not bound alone. The rates are low
// enough (one request every five seconds) that no token comes back during a subtest.
func TestRateLimits(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		s := limited(t, config.Limits{})
		for i := range 30 {
			for _, r := range []struct{ method, path, body string }{
				{"PATCH", "/digitaltwins/a", patch},
				{"GET", "/digitaltwins/a", ""},
				{"POST", "/query", `{"query":"SELECT * FROM DIGITALTWINS"}`},
				{"POST", "/digitaltwins/a/telemetry", `{"t":1}`},
			} {
				if status, _, _ := call(t, s, r.method, r.path, r.body); status == http.StatusTooManyRequests {
					t.Fatalf("request %d %s %s = %d, want no limit", i, r.method, r.path, status)
				}
			}
		}
	})

	t.Run("per twin", func(t *testing.T) {
		s := limited(t, config.Limits{TwinWritesPerSecond: 0.2})
		if status, _, _ := call(t, s, "PATCH", "/digitaltwins/a", patch); status != http.StatusNotFound {
			t.Fatalf("first PATCH of a = %d", status)
		}
		status, retry, code := call(t, s, "PATCH", "/digitaltwins/a", patch)
		if n, _ := strconv.Atoi(retry); status != http.StatusTooManyRequests || code != "TooManyRequests" || n < 4 || n > 5 {
			t.Errorf("second PATCH of a = %d %s, Retry-After %q; want 429 TooManyRequests after 4 or 5 s", status, code, retry)
		}
		for _, r := range []struct{ method, path, body string }{
			{"PUT", "/digitaltwins/a/relationships/r", `{"$targetId":"b","$relationshipName":"x"}`}, // a's relationship
			{"PATCH", "/digitaltwins/a/components/c", patch},
			{"DELETE", "/digitaltwins/a", ""},
		} {
			if status, _, _ := call(t, s, r.method, r.path, r.body); status != http.StatusTooManyRequests {
				t.Errorf("%s %s = %d, want 429 as a write of a", r.method, r.path, status)
			}
		}
		// Another twin, reads and telemetry of a are not bounded by a's writes.
		if status, _, _ := call(t, s, "PATCH", "/digitaltwins/b", patch); status != http.StatusNotFound {
			t.Errorf("PATCH of b = %d, want 204", status)
		}
		if status, _, _ := call(t, s, "GET", "/digitaltwins/a", ""); status != http.StatusNotFound {
			t.Errorf("GET of a = %d, want 404", status)
		}
		if status, _, _ := call(t, s, "POST", "/digitaltwins/a/telemetry", `{"t":1}`); status != http.StatusNotFound {
			t.Errorf("telemetry of a = %d, want 404", status)
		}
	})

	t.Run("instance", func(t *testing.T) {
		s := limited(t, config.Limits{WritesPerSecond: 0.2, ReadsPerSecond: 0.2})
		if status, _, _ := call(t, s, "PATCH", "/digitaltwins/a", patch); status != http.StatusNotFound {
			t.Fatalf("first PATCH = %d", status)
		}
		if status, retry, code := call(t, s, "PATCH", "/digitaltwins/b", patch); status != http.StatusTooManyRequests || code != "TooManyRequests" || retry == "" {
			t.Errorf("PATCH of another twin = %d %s, Retry-After %q; want 429 TooManyRequests: the instance's limit", status, code, retry)
		}
		if status, _, _ := call(t, s, "GET", "/digitaltwins/b", ""); status != http.StatusNotFound {
			t.Errorf("first GET = %d", status)
		}
		if status, _, code := call(t, s, "GET", "/digitaltwins/a/relationships", ""); status != http.StatusTooManyRequests || code != "TooManyRequests" {
			t.Errorf("second read = %d %s, want 429", status, code)
		}
		// Models and queries have no limit here.
		if status, _, _ := call(t, s, "GET", "/models", ""); status != http.StatusOK {
			t.Errorf("GET /models = %d", status)
		}
	})

	t.Run("queries", func(t *testing.T) {
		s := limited(t, config.Limits{QueriesPerSecond: 0.2})
		q := `{"query":"SELECT * FROM DIGITALTWINS"}`
		if status, _, _ := call(t, s, "POST", "/query", q); status != http.StatusOK {
			t.Fatalf("first query = %d", status)
		}
		status, retry, code := call(t, s, "POST", "/query", q)
		if n, _ := strconv.Atoi(retry); status != http.StatusTooManyRequests || code != "QuotaReachedError" || n < 4 || n > 5 {
			t.Errorf("second query = %d %s, Retry-After %q; want 429 QuotaReachedError after 4 or 5 s", status, code, retry)
		}
		if status, _, _ := call(t, s, "PATCH", "/digitaltwins/a", patch); status != http.StatusNotFound {
			t.Errorf("PATCH = %d, want 404: writes are not queries", status)
		}
	})

	t.Run("outstanding per twin", func(t *testing.T) {
		s := limited(t, config.Limits{MaxOutstandingPerTwin: 1})
		// A PATCH of a whose body has not all arrived holds a's one place while it waits.
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PATCH /digitaltwins/a?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\n"+
			"Content-Type: application/json-patch+json\r\nContent-Length: %d\r\n\r\n%s", len(patch), patch[:10])
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, retry, code := call(t, s, "GET", "/digitaltwins/a", "")
			if status == http.StatusTooManyRequests {
				if code != "TooManyRequests" || retry != "1" {
					t.Errorf("GET of a while its PATCH is in flight = %s, Retry-After %q", code, retry)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET of a while its PATCH is in flight = %d, want 429", status)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if status, _, _ := call(t, s, "GET", "/digitaltwins/b", ""); status != http.StatusNotFound {
			t.Errorf("GET of b = %d, want 404: another twin", status)
		}
		// The rest of the body: the PATCH finishes and frees the place.
		if _, err := io.WriteString(conn, patch[10:]); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("the slow PATCH = %d", resp.StatusCode)
		}
		if status, _, _ := call(t, s, "GET", "/digitaltwins/a", ""); status != http.StatusNotFound {
			t.Errorf("GET of a after its PATCH = %d, want 404", status)
		}
	})
}
