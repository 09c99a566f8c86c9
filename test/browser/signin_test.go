package browser

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/test/process"
)

// TestSignIn asks for a credential when the API answers 401, keeps it for the tab and sends
// it with every request after; a wrong one is asked again with the server's reason.
func TestSignIn(t *testing.T) {
	bin := process.Build(t)
	dataDir := t.TempDir()
	out, err := exec.Command(bin, "keys", "create", "--data-dir", dataDir, "--role", "admin", "--name", "explorer").Output()
	if err != nil {
		t.Fatalf("twinflow keys create: %v", err)
	}
	key := strings.TrimSpace(string(out))
	_, base := serveData(t, bin, dataDir, "--auth", "required")
	b := newBrowser(t, base)

	b.navigate("#/models")
	b.waitJS("the sign-in dialog", `document.querySelector('dialog.signin')?.open`)
	b.setInput("#signin-token", "tfk_wrong_key")
	b.clickButton("Sign in")
	b.waitJS("the dialog again, with the reason", `document.querySelector('dialog.signin')?.open && document.querySelector('dialog.signin [role=alert]').textContent.length > 0`)
	b.setInput("#signin-token", key)
	b.clickButton("Sign in")
	b.waitJS("the models, read with the key", `!document.querySelector('dialog.signin').open && document.querySelector('#model-count').textContent === '0'`)
	if got := eval[string](b, `sessionStorage.getItem('twinflow.token')`); got != key {
		t.Errorf("sessionStorage holds %q, want the key", got)
	}

	// The key is sent with what the page does next: the flows, which need the admin role.
	b.goTo("#/flows")
	b.waitJS("the endpoints table", `document.querySelector('#endpoint-table') && !document.querySelector('.flows [role=alert]')`)
	b.checkProblems("status of 401")
}
