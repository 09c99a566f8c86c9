package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/test/process"
)

// TestResources applies, lists, shows and deletes endpoints, routes, sources and mappings
// from YAML and JSON files, including a config file's sections.
func TestResources(t *testing.T) {
	// A webhook that takes every event.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "twinflow.yaml", "delivery:\n  skipHandshake: true\n")
	c, _ := twinsServer(t, "--config", cfg)

	// A config file: its endpoints section is applied.
	endpoints := writeFile(t, dir, "endpoints.yaml", fmt.Sprintf(`server:
  listen: 127.0.0.1:8080
endpoints:
  hook:
    endpointType: webhook
    url: %s/events
  hook2:
    endpointType: webhook
    url: %s/other
`, hook.URL, hook.URL))
	r := c.ok("endpoints", "apply", "-f", endpoints)
	if r.stdout != "endpoint hook applied\nendpoint hook2 applied\n" {
		t.Errorf("endpoints apply: %v", r)
	}
	r = c.ok("endpoints", "list", "--output", "table")
	if !regexp.MustCompile(`(?m)^hook\s+webhook\s+http://127\.0\.0\.1:\d+/events\s*$`).MatchString(r.stdout) {
		t.Errorf("endpoints list:\n%s", r.stdout)
	}
	r = c.ok("endpoints", "show", "hook")
	if !strings.Contains(r.stdout, `"endpointType": "webhook"`) {
		t.Errorf("endpoints show: %s", r.stdout)
	}

	// A route from JSON on stdin, one body named on the command line.
	c.stdin = `{"endpointName": "hook", "filter": "type = 'Microsoft.DigitalTwins.Twin.Update'"}`
	c.ok("routes", "apply", "-f", "-", "updates")
	c.stdin = ""
	routes := writeFile(t, dir, "routes.json", `{"all": {"endpointName": "hook2", "filter": "true"}}`)
	c.ok("routes", "apply", "-f", routes)
	r = c.ok("routes", "list", "--output", "json")
	if got := jsonLines[map[string]any](t, r.stdout); len(got) != 2 {
		t.Errorf("routes list: %s", r.stdout)
	}
	r = c.ok("routes", "show", "updates")
	if !strings.Contains(r.stdout, `"endpointName": "hook"`) {
		t.Errorf("routes show: %s", r.stdout)
	}
	badRoute := writeFile(t, dir, "bad-route.yaml", "broken:\n  endpointName: hook\n  filter: \"type = \"\n")
	c.fails(1, []string{"routes", "apply", "-f", badRoute}, "event route broken: EventRouteFilterInvalid")
	c.fails(1, []string{"endpoints", "delete", "hook"}, "EndpointInUse")
	c.ok("routes", "delete", "updates")
	c.ok("endpoints", "delete", "hook")
	c.fails(1, []string{"endpoints", "show", "hook"}, "EndpointNotFound")
	c.fails(1, []string{"routes", "delete", "updates"}, "EventRouteNotFound")

	// A source and a mapping.
	sources := writeFile(t, dir, "sources.yaml", "lab:\n  sourceType: http\n")
	c.ok("sources", "apply", "-f", sources)
	mappings := writeFile(t, dir, "mappings.yaml", bom+`lab:
  source: lab
  twinId: message.body.device
  patch:
    /temperature: message.body.temperature
`)
	c.ok("mappings", "apply", "-f", mappings)
	r = c.ok("sources", "list", "--output", "table")
	if !regexp.MustCompile(`(?m)^lab\s+http\s*$`).MatchString(r.stdout) {
		t.Errorf("sources list:\n%s", r.stdout)
	}
	r = c.ok("mappings", "list", "--output", "table")
	if !regexp.MustCompile(`(?m)^lab\s+lab\s+message\.body\.device\s*$`).MatchString(r.stdout) {
		t.Errorf("mappings list:\n%s", r.stdout)
	}
	c.ok("mappings", "show", "lab")
	c.ok("sources", "show", "lab")
	c.fails(1, []string{"sources", "delete", "lab"}, "SourceInUse")
	c.ok("mappings", "delete", "lab")
	c.ok("sources", "delete", "lab")
	c.fails(1, []string{"mappings", "show", "lab"}, "MappingNotFound")

	c.fails(2, []string{"endpoints", "apply"}, "apply needs -f FILE")
	notMap := writeFile(t, dir, "list.yaml", "- a\n- b\n")
	c.fails(2, []string{"sources", "apply", "-f", notMap}, "must hold an object")
	notYAML := writeFile(t, dir, "broken.yaml", "a: [\n")
	c.fails(2, []string{"sources", "apply", "-f", notYAML}, "neither YAML nor JSON")
	c.fails(1, []string{"sources", "apply", "-f", filepath.Join(dir, "none.yaml")}, "no such file")
}

// TestDeadLetters lists and redrives the dead letters of a source, and of an endpoint.
func TestDeadLetters(t *testing.T) {
	c, p := twinsServer(t)
	dir := t.TempDir()
	c.ok("sources", "apply", "-f", writeFile(t, dir, "s.yaml", "lab:\n  sourceType: http\n"))
	c.ok("mappings", "apply", "-f", writeFile(t, dir, "m.yaml",
		"lab:\n  source: lab\n  twinId: message.body.device\n  patch:\n    /temperature: message.body.temperature\n"))
	// A message for a twin that does not exist yet becomes a dead letter.
	resp, err := http.Post(p.URL+"/sources/lab/messages?api-version=2023-10-31", "application/json",
		strings.NewReader(`{"device": "room-9", "temperature": 30}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "deadLettered") {
		t.Fatalf("push: %s", body)
	}
	r := c.ok("deadletters", "list", "--source", "lab", "--output", "json")
	dls := jsonLines[struct{ ID, Reason string }](t, r.stdout)
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "room-9") {
		t.Fatalf("deadletters list: %v", r)
	}
	r = c.ok("deadletters", "list", "--source", "lab", "--output", "table")
	if !regexp.MustCompile(`(?m)^ID\s+TIME\s+ATTEMPTS\s+REASON$`).MatchString(r.stdout) {
		t.Errorf("table:\n%s", r.stdout)
	}
	// Once the twin exists, the redriven message applies.
	c.ok("twins", "create", "room-9", "--model", "dtmi:test:Room;1", "--properties", `{"thermostat": {"$metadata": {}}}`)
	r = c.ok("deadletters", "redrive", "--source", "lab", "--all")
	if !strings.HasPrefix(r.stdout, dls[0].ID+" redriven") || !strings.Contains(r.stdout, "applied") {
		t.Errorf("redrive: %v", r)
	}
	r = c.ok("twins", "show", "room-9")
	if !strings.Contains(r.stdout, `"temperature": 30`) {
		t.Errorf("the redriven message was not applied: %s", r.stdout)
	}
	if r = c.ok("deadletters", "list", "--source", "lab", "--output", "json"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("dead letters left: %s", r.stdout)
	}
	c.fails(1, []string{"deadletters", "redrive", "--source", "lab", "99"}, "redrive 99: DeadLetterNotFound")
	c.fails(1, []string{"deadletters", "list", "--source", "nope"}, "SourceNotFound")
	c.fails(1, []string{"deadletters", "list", "--endpoint", "nope"}, "EndpointNotFound")
	c.fails(2, []string{"deadletters", "list"}, "name an endpoint (--endpoint NAME) or a source (--source NAME)")
	c.fails(2, []string{"deadletters", "list", "--endpoint", "a", "--source", "b"}, "exclusive")
	c.fails(2, []string{"deadletters", "redrive", "--source", "lab"}, "give the ids of the dead letters, or --all")
}

// TestHistory shows a property's changes as JSON, a table and CSV.
func TestHistory(t *testing.T) {
	c, _ := twinsServer(t)
	c.ok("twins", "create", "room-1", "--model", "dtmi:test:Room;1", "--properties", `{"temperature": 20, "thermostat": {"$metadata": {}}}`)
	for _, v := range []string{"21", "22.5"} {
		c.ok("twins", "patch", "room-1", "--patch", `[{"op": "replace", "path": "/temperature", "value": `+v+`}]`)
	}
	want := []string{"20", "21", "22.5"}
	var rows []struct {
		Key    string
		Value  json.RawMessage
		Action string
	}
	// History follows the change log: wait for it to catch up.
	for range 100 {
		r := c.ok("history", "show", "room-1", "temperature", "--since", "1h", "--output", "json")
		rows = jsonLines[struct {
			Key    string
			Value  json.RawMessage
			Action string
		}](t, r.stdout)
		if len(rows) == len(want) {
			break
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("history: %d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		if rows[i].Key != "temperature" || string(rows[i].Value) != w || rows[i].Action != "update" {
			t.Errorf("row %d: %+v, want temperature = %s", i, rows[i], w)
		}
	}
	r := c.ok("history", "show", "room-1", "temperature", "--since", "2000-01-01T00:00:00Z", "--until", "0s", "--output", "csv")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || lines[0] != "timeStamp,value,action,sourceTimeStamp" || !strings.Contains(lines[3], ",22.5,update,") {
		t.Errorf("csv:\n%s", r.stdout)
	}
	r = c.ok("history", "show", "room-1", "temperature", "--since", "1h", "--output", "table")
	if !regexp.MustCompile(`(?m)^TIME\s+VALUE\s+ACTION\s+SOURCE TIME$`).MatchString(r.stdout) || strings.Count(r.stdout, "update") != 3 {
		t.Errorf("table:\n%s", r.stdout)
	}
	// Nothing before --since.
	if r = c.ok("history", "show", "room-1", "temperature", "--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02T00:00:00Z"); r.stdout != "" {
		t.Errorf("history of 2000: %s", r.stdout)
	}
	c.fails(2, []string{"history", "show", "room-1", "temperature", "--since", "yesterday"}, `--since "yesterday"`)
	c.fails(2, []string{"history", "show", "room-1", "temperature"}, `required flag(s) "since" not set`)

	// The lifecycle: room-1's creation, then its deletion.
	c.ok("twins", "delete", "room-1")
	var life []struct{ Kind, Action, ModelID string }
	for range 100 {
		life = jsonLines[struct{ Kind, Action, ModelID string }](t, c.ok("history", "lifecycle", "room-1", "--output", "json").stdout)
		if len(life) == 2 {
			break
		}
	}
	if len(life) != 2 || life[0] != (struct{ Kind, Action, ModelID string }{"twin", "Create", "dtmi:test:Room;1"}) || life[1].Action != "Delete" {
		t.Errorf("lifecycle of room-1: %+v, want its creation and deletion", life)
	}
	r = c.ok("history", "lifecycle", "room-1", "--since", "1h", "--output", "table")
	if !regexp.MustCompile(`(?m)^TIME\s+KIND\s+ACTION\s+WHAT$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "Delete") {
		t.Errorf("lifecycle table:\n%s", r.stdout)
	}
	if r = c.ok("history", "lifecycle", "nobody"); r.stdout != "" {
		t.Errorf("lifecycle of an unknown twin: %s", r.stdout)
	}
	c.fails(2, []string{"history", "lifecycle", "room-1", "--until", "soon"}, `--until "soon"`)
}

// TestAuth runs the client against a server that requires authentication, with an API key
// that `twinflow keys create` made: without it, 401; with it from --token or
// TWINFLOW_TOKEN, the commands work as its role allows.
func TestAuth(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	keys := cli{t: t}
	owner := strings.TrimSpace(keys.ok("keys", "create", "--role", "owner", "--data-dir", dataDir).stdout)
	reader := strings.TrimSpace(keys.ok("keys", "create", "--role", "reader", "--data-dir", dataDir).stdout)
	p := startServe(t, "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--auth", "required")
	c := cli{t: t, server: p.URL}
	models := buildingModels(t)

	c.fails(1, []string{"models", "list"}, "twinflow: Unauthorized: ")
	c.fails(1, []string{"models", "upload", models}, "Unauthorized")
	c.fails(1, []string{"models", "list", "--token", "tfk_0000000000000000_wrong"}, "Unauthorized")
	c.ok("models", "upload", models, "--token", owner)
	c.env = []string{"TWINFLOW_TOKEN=" + reader}
	r := c.ok("models", "list", "--output", "json")
	if n := len(jsonLines[map[string]any](t, r.stdout)); n != 4 {
		t.Errorf("the reader lists %d models", n)
	}
	c.fails(1, []string{"twins", "create", "x", "--model", "dtmi:test:Space;1"}, "Forbidden")
	// The flag wins over the environment.
	c.ok("twins", "create", "x", "--model", "dtmi:test:Space;1", "--token", owner)
	// An import needs the owner role for its upload.
	export := writeFile(t, t.TempDir(), "x.ndjson", c.ok("export").stdout)
	c.fails(1, []string{"import", export}, "Forbidden")
	c.env = []string{"TWINFLOW_TOKEN=" + owner}
	c.ok("import", export)
}

// TestTLS trusts a server's certificate from --ca-file, or skips the verification.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	p := startServe(t, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--tls-cert", cert, "--tls-key", key)
	c := cli{t: t, server: p.URL}
	if !strings.HasPrefix(p.URL, "https://") {
		t.Fatalf("server URL %s", p.URL)
	}
	c.fails(3, []string{"models", "list"}, "cannot reach the server at "+p.URL, "certificate")
	c.ok("models", "list", "--ca-file", cert)
	c.ok("models", "list", "--insecure-skip-verify")
	c.fails(2, []string{"models", "list", "--ca-file", key}, "holds no PEM certificate")
	c.fails(2, []string{"models", "list", "--ca-file", filepath.Join(dir, "none.pem")}, "read the CA file")
}

// TestUsageAndReachability checks the exit codes of usage errors (2) and of a server that
// cannot be reached (3), and that completion scripts and every command's help are there.
func TestUsageAndReachability(t *testing.T) {
	// Nothing listens on the port of a server that was stopped.
	srv := httptest.NewServer(http.NotFoundHandler())
	down := srv.URL
	srv.Close()
	c := cli{t: t, server: down}
	for _, args := range [][]string{
		{"models", "list"}, {"twins", "show", "x"}, {"query", "SELECT * FROM DIGITALTWINS"}, {"export"},
		{"models", "upload", buildingModels(t)}, {"events", "tail"},
	} {
		c.fails(3, args, "cannot reach the server at "+down+": ", "connection refused")
	}
	c.server = ""
	c.env = []string{"TWINFLOW_SERVER=" + down}
	c.fails(3, []string{"models", "list"}, down)
	c.fails(3, []string{"models", "list", "--server", down + "/"}, down)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "twinflow"`},
		{[]string{"models"}, "Usage:"},
		{[]string{"models", "frob"}, `unknown command "frob" for "twinflow models"`},
		{[]string{"twins", "show"}, "accepts 1 arg(s), received 0"},
		{[]string{"twins", "show", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"models", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"models", "list", "--output", "yaml"}, `--output "yaml": want table, json`},
		{[]string{"models", "list", "--server", "ftp://x"}, "want http://host:port"},
		{[]string{"relationships", "create", "a", "b"}, "accepts 3 arg(s)"},
		{[]string{"export", "extra"}, `unknown command "extra" for "twinflow export"`},
	} {
		c.fails(2, tc.args, tc.want)
	}

	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := c.ok("completion", shell)
		if !strings.Contains(r.stdout, "twinflow") || len(r.stdout) < 1000 {
			t.Errorf("completion %s: %d bytes", shell, len(r.stdout))
		}
	}
	r := c.ok("__complete", "twins", "")
	for _, verb := range []string{"show", "create", "patch", "delete"} {
		if !strings.Contains(r.stdout, verb) {
			t.Errorf("completing 'twins ': no %s in\n%s", verb, r.stdout)
		}
	}

	// Every command's help, with an example.
	for _, path := range commandPaths(t, c, nil) {
		r := c.ok(append(path, "--help")...)
		if !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Example") {
			t.Errorf("twinflow %s --help lacks Usage or an Example:\n%s", strings.Join(path, " "), r.stdout)
		}
	}
	// The commands that run on this machine rather than talk to a server print their help,
	// as Go's flag package does, on stderr when it follows a command name.
	for _, args := range [][]string{
		{"serve", "--help"}, {"keys", "--help"}, {"keys", "create", "--help"}, {"keys", "list", "--help"},
		{"keys", "revoke", "--help"}, {"bench", "--help"}, {"bench", "patch", "--help"},
		{"bench", "restart", "--help"}, {"bench", "delivery", "--help"}, {"bench", "import", "--help"},
		{"bench", "ingest", "--help"}, {"bench", "history", "--help"}, {"bench", "upload", "--help"},
	} {
		r := c.ok(args...)
		if help := r.stdout + r.stderr; !strings.Contains(help, "Usage") || !strings.Contains(help, "Example") {
			t.Errorf("twinflow %s lacks Usage or an Example:\n%s", strings.Join(args, " "), help)
		}
	}
}

// commandPaths returns every client command below path, as the help lists them.
func commandPaths(t *testing.T, c cli, path []string) [][]string {
	t.Helper()
	r := c.ok(append(path, "--help")...)
	_, list, ok := strings.Cut(r.stdout, "Available Commands:\n")
	if !ok {
		return [][]string{path}
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var out [][]string
	if len(path) > 0 {
		out = append(out, path)
	}
	for line := range strings.SplitSeq(list, "\n") {
		name := strings.Fields(line)[0]
		switch name {
		case "help", "completion", "serve", "keys", "bench":
			continue // cobra's own, and the commands with their own parsers (tested in cmd/twinflow)
		}
		sub := append(append([]string(nil), path...), name)
		out = append(out, commandPaths(t, c, sub)...)
	}
	return out
}

// startServe runs `twinflow serve args...` until the test ends.
func startServe(t *testing.T, args ...string) *process.Process {
	t.Helper()
	return process.Start(t, bin, args...)
}

// selfSigned writes a certificate for the loopback addresses, its own CA, and its key into
// dir.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	return process.SelfSignedCert(t, dir)
}
