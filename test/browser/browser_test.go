// Package browser tests the explorer in a real headless Chromium (/usr/bin/chromium) driven
// by chromedp against the real twinflow binary: the pages, the API calls they make and what
// they show.
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// apiVersion is the api-version the tests' own requests carry.
const apiVersion = "2023-10-31"

// browser is one headless Chromium tab on a twinflow server, for one test.
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string // the server's URL, without a final slash
	// token, when set, is sent by the test's own API requests.
	token string

	mu       sync.Mutex
	problems []string // console errors, CSP violations and uncaught exceptions
}

// newBrowser starts a headless Chromium for t, with its tab at base. A missing Chromium
// skips t, or fails it under CI (internal/testenv).
func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		testenv.Missing(t, "Chromium at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, base: strings.TrimSuffix(base, "/")}
	// Start the browser and subscribe to the console before the first page loads.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.problem(m.String() + " " + m.URL)
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot("failure")
		}
	})
	return b
}

func (b *browser) problem(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// checkProblems fails the test for every console error, CSP violation and uncaught
// exception the page reported, but for those an allowed substring names (an expected 401
// or 412 is logged by the browser as a failed resource load).
func (b *browser) checkProblems(allowed ...string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
next:
	for _, p := range b.problems {
		for _, a := range allowed {
			if strings.Contains(p, a) {
				continue next
			}
		}
		b.t.Errorf("the page reported: %s", p)
	}
	b.problems = nil
}

// artifactDir returns where a failing test keeps its screenshots: t.ArtifactDir() when go test
// runs with -artifacts (under -outputdir), else a directory that outlives the test.
func artifactDir(t testing.TB) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	dir, err := os.MkdirTemp("", "twinflow-browser-")
	if err != nil {
		t.Logf("no directory for the screenshot: %v", err)
		return ""
	}
	return dir
}

// screenshot saves a PNG of the whole page and logs its path.
func (b *browser) screenshot(name string) {
	dir := artifactDir(b.t)
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, strings.ReplaceAll(b.t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot of the page: %s", path)
}

// run runs actions, failing the test with what if they fail or take over 30 seconds.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls the JavaScript expression expr until it is true, failing after 30 seconds
// with what and the page's state.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
			b.t.Fatalf("%s: %s is not true after 30 s (err %v); the page says:\n%s", what, expr, err, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text returns the text of the first element selector matches.
func (b *browser) text(selector string) string {
	b.t.Helper()
	return eval[string](b, `document.querySelector(`+jsString(selector)+`).textContent`)
}

// eval returns the value of the JavaScript expression expr.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// do evaluates the JavaScript expression expr for its effect.
func (b *browser) do(expr string) {
	b.t.Helper()
	eval[chromedp.Void](b, expr)
}

// jsString quotes s as a JavaScript string.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// setInput sets the value of the input or select selector names as a user typing it would,
// so that the page's input handlers see it.
func (b *browser) setInput(selector, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		const proto = el instanceof HTMLSelectElement ? HTMLSelectElement.prototype :
			el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
		Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, %q);
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
		return el.value;
	})()`, selector, value)
	b.run("wait for "+selector, chromedp.WaitVisible(chromedp.CSS(selector)))
	if got := eval[string](b, js); got != value {
		b.t.Fatalf("set %s to %q: it holds %q", selector, value, got)
	}
}

// click clicks the first element selector matches, once it is visible, as the keyboard
// or a pointer would (whatever else the layout puts over it).
func (b *browser) click(selector string) {
	b.t.Helper()
	b.run("wait for "+selector, chromedp.WaitVisible(chromedp.CSS(selector)))
	b.do(`document.querySelector(` + jsString(selector) + `).click()`)
}

// clickButton clicks the visible button whose text is text.
func (b *browser) clickButton(text string) {
	b.t.Helper()
	b.waitJS("find the button "+text, fmt.Sprintf(`[...document.querySelectorAll('button')].some(x => x.textContent.trim() === %q && !x.disabled)`, text))
	b.do(fmt.Sprintf(`[...document.querySelectorAll('button')].find(x => x.textContent.trim() === %q && !x.disabled).click()`, text))
}

// navigate opens the explorer at the hash route (e.g. "#/models").
func (b *browser) navigate(route string) {
	b.t.Helper()
	b.run("open "+route, chromedp.Navigate(b.base+"/"+route), chromedp.WaitVisible(chromedp.CSS("header nav")))
}

// goTo switches the open explorer to the hash route, as following a link does.
func (b *browser) goTo(route string) {
	b.t.Helper()
	b.do(fmt.Sprintf(`location.hash = %q`, route))
}

// api sends a request of the test's own, as another client would, and returns the status,
// the body and the headers; want, if not zero, is the status it must answer.
func (b *browser) api(method, path string, body any, want int, header ...string) (int, []byte, http.Header) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			b.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, b.base+path+sep+"api-version="+apiVersion, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	if want != 0 && res.StatusCode != want {
		b.t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, data)
	}
	return res.StatusCode, data, res.Header
}

// serve builds twinflow and starts `twinflow serve` on a free loopback port with a fresh data
// directory and args, returning its URL.
func serve(t *testing.T, args ...string) (*process.Process, string) {
	t.Helper()
	return serveData(t, process.Build(t), t.TempDir(), args...)
}

// serveData starts `bin serve` on a free loopback port with the data directory dataDir and
// args, returning its URL.
func serveData(t *testing.T, bin, dataDir string, args ...string) (*process.Process, string) {
	t.Helper()
	p := process.Start(t, bin, append([]string{"--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	return p, p.URL
}

// setFiles sets the files of the file input selector names.
func setFiles(selector string, files []string) chromedp.Action[chromedp.Void] {
	return chromedp.SetUploadFiles(chromedp.CSS(selector), files)
}

// clickQuery clicks the first element selector names.
func clickQuery(selector string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(selector))
}
