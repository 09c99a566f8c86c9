package dtdl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/testenv"
)

// conformanceCase is one case of the DTDL conformance corpus.
type conformanceCase struct {
	Valid   bool              `json:"valid"`
	Options []string          `json:"options"`
	Input   []json.RawMessage `json:"input"`
	Expect  *struct {
		UnresolvedIdentifiers []string `json:"unresolvedIdentifiers"`
	} `json:"expect"`
}

// corpusDir returns the DTDL conformance corpus directory. The corpus is a prerequisite: when
// it is absent the test skips, or fails under CI (see testenv.Missing).
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := findCorpus()
	if dir == "" {
		testenv.Missing(t, "DTDL corpus not found: set TWINFLOW_DTDL_CORPUS to its directory, or place shared/testdata/dtdl beside the repository (../shared/testdata/dtdl from its root)")
	}
	return dir
}

// findCorpus finds the DTDL conformance corpus: $TWINFLOW_DTDL_CORPUS, or shared/testdata/dtdl
// beside the repository root (the directory holding go.mod). It returns "" when neither exists.
func findCorpus() string {
	if dir := os.Getenv("TWINFLOW_DTDL_CORPUS"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; filepath.Dir(dir) != dir; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			c := filepath.Join(dir, "..", "shared", "testdata", "dtdl")
			if _, err := os.Stat(c); err == nil {
				return c
			}
			return ""
		}
	}
	return ""
}

const knownDifferencesFile = "testdata/conformance-known-differences.txt"

// loadKnownDifferences reads the committed list of cases this parser is known to disagree on:
// one "<version>/<file>#<index>: reason" per line.
func loadKnownDifferences(t *testing.T) map[string]string {
	f, err := os.Open(knownDifferencesFile)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, reason, _ := strings.Cut(line, ": ")
		known[key] = reason
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return known
}

// TestConformance runs every case of the DTDL v2 and v3 conformance corpus and compares the
// verdict (and, for Completion cases, the unresolved identifiers) with the expected one.
func TestConformance(t *testing.T) {
	root := corpusDir(t)
	known := loadKnownDifferences(t)
	for _, version := range []string{"v2", "v3"} {
		files, err := filepath.Glob(filepath.Join(root, version, "spec", "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no conformance files under %s", filepath.Join(root, version, "spec"))
		}
		var (
			mu           sync.Mutex
			total, agree int
			unexpected   []string
			nowPassing   []string
			wg           sync.WaitGroup
			sem          = make(chan struct{}, 4)
		)
		for _, file := range files {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				data, err := os.ReadFile(file)
				if err != nil {
					t.Error(err)
					return
				}
				data = trimBOM(data)
				var cases []conformanceCase
				if err := json.Unmarshal(data, &cases); err != nil {
					t.Errorf("%s: %v", file, err)
					return
				}
				name := version + "/" + filepath.Base(file)
				for i, c := range cases {
					key := fmt.Sprintf("%s#%d", name, i)
					reason := checkCase(c)
					mu.Lock()
					total++
					_, listed := known[key]
					switch {
					case reason == "":
						agree++
						if listed {
							nowPassing = append(nowPassing, key)
						}
					case !listed:
						unexpected = append(unexpected, key+": "+reason)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		sort.Strings(unexpected)
		sort.Strings(nowPassing)
		t.Logf("DTDL %s conformance: %d of %d cases agree (%.2f%%)", version, agree, total, 100*float64(agree)/float64(total))
		for _, u := range unexpected {
			t.Errorf("unexpected disagreement: %s", u)
		}
		for _, k := range nowPassing {
			t.Errorf("listed in %s but now agrees (remove it): %s", knownDifferencesFile, k)
		}
		if float64(agree) < 0.99*float64(total) {
			t.Errorf("DTDL %s agreement %d/%d is below 99%%", version, agree, total)
		}
	}
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return b[3:]
	}
	return b
}

// checkCase parses one case and returns why the result disagrees with the expectation, or "".
func checkCase(c conformanceCase) string {
	docs := make([][]byte, len(c.Input))
	for i, in := range c.Input {
		docs[i] = in
	}
	opts := Options{AllowUndefinedExtensions: slices.Contains(c.Options, "AllowUndefinedExtensions")}
	_, err := Parse(docs, nil, opts)
	switch {
	case c.Valid && err != nil:
		return "expected valid, got " + strings.ReplaceAll(err.Error(), "\n", " |")
	case !c.Valid && err == nil:
		return "expected invalid, parsed without error"
	case c.Expect != nil && len(c.Expect.UnresolvedIdentifiers) > 0:
		var perr *Error
		if !errors.As(err, &perr) {
			return fmt.Sprintf("expected *Error, got %T", err)
		}
		want := slices.Sorted(slices.Values(c.Expect.UnresolvedIdentifiers))
		if !slices.Equal(perr.Unresolved, want) {
			return fmt.Sprintf("unresolved identifiers %v, want %v", perr.Unresolved, want)
		}
	}
	return ""
}
