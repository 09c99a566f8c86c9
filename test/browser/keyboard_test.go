package browser

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestKeyboard uses the explorer by keyboard alone: Tab reaches the views' links in order,
// Enter follows one, a twin's value is saved with Enter and put back with Escape, and Escape
// closes the sign-in dialog.
func TestKeyboard(t *testing.T) {
	_, base := serve(t)
	b := newBrowser(t, base)
	b.api("POST", "/models", []any{rawJSON(models["space.json"])}, 201)
	b.api("PUT", "/digitaltwins/s1", map[string]any{"$metadata": map[string]string{"$model": "dtmi:example:Space;1"}, "name": "one"}, 200)

	b.navigate("#/graph")
	var order []string
	for range 4 {
		b.run("press Tab", chromedp.KeyEvent(kb.Tab))
		order = append(order, eval[string](b, `document.activeElement.textContent`))
	}
	if want := []string{"Graph", "Models", "History", "Flows"}; !equal(order, want) {
		t.Fatalf("Tab reached %q, want the views' links %q", order, want)
	}
	if !eval[bool](b, `getComputedStyle(document.activeElement).outlineStyle !== 'none'`) {
		t.Error("the focused link shows no outline")
	}
	b.run("press Shift+Tab", chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
	b.run("press Enter", chromedp.KeyEvent(kb.Enter))
	b.waitJS("the history view", `location.hash === '#/history' && document.querySelector('#history-twins')`)

	// The twin panel: Escape puts a typed value back, Enter saves it.
	b.goTo("#/graph")
	b.click("#run-query")
	b.clickButton("Table")
	b.clickButton("s1")
	b.waitJS("the panel", `document.querySelector('#prop-name')?.value === 'one'`)
	b.run("type", chromedp.Focus(chromedp.CSS("#prop-name")), chromedp.KeyEvent("x"), chromedp.KeyEvent(kb.Escape))
	b.waitJS("the value put back", `document.querySelector('#prop-name').value === 'one'`)
	b.run("type and save", chromedp.Focus(chromedp.CSS("#prop-name")), chromedp.KeyEvent("2"), chromedp.KeyEvent(kb.Enter))
	b.waitJS("the save", `document.querySelector('.twin-panel [role=status]')?.textContent === 'Saved /name.'`)
	b.checkProblems()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
