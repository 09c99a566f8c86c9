package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// UploadConfig configures the model upload benchmark. Zero fields take the defaults in
// brackets.
type UploadConfig struct {
	// Binary is the twinflow executable: the server, and the client that uploads; required.
	Binary string
	// Dir is where the temporary directory of the models and the data goes [os.TempDir()].
	Dir string
	// Keep leaves that directory in place instead of removing it.
	Keep bool
	// Models is the number of interfaces generated and uploaded [3,700].
	Models int
	// Seed makes the ontology; the same seed writes the same files [1].
	Seed uint64
}

func (c UploadConfig) withDefaults() UploadConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Models <= 0 {
		c.Models = 3700
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// UploadResult is what the model upload benchmark measured.
type UploadResult struct {
	Ontology Ontology
	// Upload is the wall time of `twinflow models upload` of the folder, from the start of
	// the process to its exit, and Output what it printed.
	Upload time.Duration
	Output string
}

// Table writes the result as a short table.
func (r UploadResult) Table(w io.Writer) error {
	o := r.Ontology
	return table(w, [][2]string{
		{"interfaces", fmt.Sprintf("%d in %d files (%.1f MiB), %d with a byte-order mark", o.Interfaces, o.Files, float64(o.Bytes)/(1<<20), o.BOMs)},
		{"shape", fmt.Sprintf("%d roots, extends chains up to %d deep, %d properties, %d relationships, %d components, %d mutual pairs",
			o.Roots, o.MaxDepth, o.Properties, o.Relationships, o.Components, o.Pairs)},
		{"models upload", fmt.Sprintf("%v (%.0f interfaces/s)", r.Upload.Round(time.Millisecond), float64(o.Interfaces)/r.Upload.Seconds())},
		{"client said", strings.TrimSpace(r.Output)},
	})
}

// Upload runs the model upload benchmark: it writes an ontology of cfg.Models interfaces
// into a folder (see WriteOntology), starts `Binary serve` on a fresh data directory, and
// times `Binary models upload` of the folder against it. It stops the server before
// returning.
func Upload(ctx context.Context, cfg UploadConfig, logger *slog.Logger) (UploadResult, error) {
	cfg = cfg.withDefaults()
	var res UploadResult
	if cfg.Binary == "" {
		return res, errors.New("upload benchmark: the twinflow binary is required")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-upload-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}
	models := filepath.Join(dir, "models")
	if res.Ontology, err = WriteOntology(models, cfg.Models, cfg.Seed); err != nil {
		return res, err
	}
	logger.Info("ontology written", slog.String("dir", models), slog.Int("interfaces", res.Ontology.Interfaces), slog.Int("files", res.Ontology.Files))

	url, stop, err := startServer(ctx, cfg.Binary, filepath.Join(dir, "data"))
	if err != nil {
		return res, err
	}
	defer stop()
	logger.Info("uploading", slog.String("server", url))
	cmd := exec.CommandContext(ctx, cfg.Binary, "models", "upload", models, "--server", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	res.Upload, res.Output = time.Since(start), out.String()
	if err != nil {
		return res, fmt.Errorf("models upload: %w\n%s", err, out.String())
	}
	return res, nil
}

// startServer starts `bin serve` on dataDir and a free loopback port and waits until it is
// ready. stop ends it with SIGTERM and waits for it.
func startServer(ctx context.Context, bin, dataDir string) (url string, stop func(), err error) {
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--history", "off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	urls := make(chan string, 1)
	go func() {
		buf := make([]byte, 0, 4096)
		chunk := make([]byte, 4096)
		sent := false
		for {
			n, err := stderr.Read(chunk)
			if !sent {
				buf = append(buf, chunk[:n]...)
				if m := listeningLine.FindSubmatch(buf); m != nil {
					urls <- string(m[1])
					sent = true
				}
			}
			if err != nil {
				if !sent {
					close(urls)
				}
				return
			}
		}
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			stop()
			return "", nil, errors.New("the server exited before listening")
		}
		url = u
	case <-time.After(time.Minute):
		stop()
		return "", nil, errors.New("the server did not listen within a minute")
	}
	client := httpClient(1)
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, url, time.Minute); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// Ontology describes the interfaces WriteOntology wrote.
type Ontology struct {
	Interfaces, Files, BOMs int
	Bytes                   int64
	Roots, MaxDepth         int
	Properties              int
	Relationships           int
	Components              int
	Pairs                   int
}

// maxExtendsDepth is the deepest extends chain WriteOntology makes: DTDL allows 10 levels.
const maxExtendsDepth = 10

// WriteOntology writes n DTDL v3 interfaces into dir, shaped like a published building
// ontology: a few root classes (Space, Asset, Equipment, Point, ...) refined by extends
// chains up to 10 levels deep, each interface with a display name, a description and 2 to 7
// properties (double, integer, string, boolean, an enum, an object), relationships whose
// targets are classes defined elsewhere in the tree (mostly near the roots, as ontologies
// relate base classes), a component whose schema is one of a set of capability interfaces,
// and pairs of interfaces whose relationships target each other. Files are grouped in
// folders by root; most hold one interface, some an array of a few, one in ten starts with a
// byte-order mark, and their names do not follow the dependency order. The same seed writes
// the same ontology.
func WriteOntology(dir string, n int, seed uint64) (Ontology, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	roots := []string{"Space", "Asset", "Equipment", "Point", "Zone", "Agent", "Collection", "Document", "Event", "Capability"}
	var o Ontology
	type iface struct {
		id, name, root, parent string
		depth                  int
		doc                    map[string]any
	}
	all := make([]*iface, 0, n)
	id := func(root string, i int) string {
		return fmt.Sprintf("dtmi:org:example:%s:C%04d;1", strings.ToLower(root), i)
	}
	capabilities := 0
	for i := range n {
		var it iface
		switch {
		case i < len(roots):
			it = iface{root: roots[i], name: roots[i]}
			o.Roots++
		default:
			// Refine an existing class, favouring deeper ones so long chains form.
			var parent *iface
			for {
				parent = all[rng.IntN(len(all))]
				if parent.depth < maxExtendsDepth-1 && (parent.depth >= 2 || rng.IntN(3) == 0) {
					break
				}
			}
			it = iface{root: parent.root, parent: parent.id, depth: parent.depth + 1, name: fmt.Sprintf("%s%d", parent.root, i)}
		}
		it.id = id(it.root, i)
		if it.root == "Capability" {
			capabilities++
		}
		contents := make([]any, 0, 10)
		for p := range 2 + rng.IntN(6) {
			contents = append(contents, ontologyProperty(rng, it.name, p))
			o.Properties++
		}
		doc := map[string]any{
			"@id": it.id, "@type": "Interface", "@context": "dtmi:dtdl:context;3",
			"displayName": map[string]string{"en": it.name},
			"description": map[string]string{"en": fmt.Sprintf("The class %s of the %s tree, at depth %d.", it.name, it.root, it.depth)},
		}
		if it.parent != "" {
			doc["extends"] = it.parent
		}
		// Relationships to classes already defined: base classes mostly, any other sometimes.
		if i >= len(roots) {
			for r := range rng.IntN(3) {
				target := all[rng.IntN(min(len(all), len(roots)*4))]
				if rng.IntN(4) == 0 {
					target = all[rng.IntN(len(all))]
				}
				contents = append(contents, map[string]any{
					"@type": "Relationship", "name": fmt.Sprintf("c%d_rel%d", i, r), "target": target.id,
					"displayName": map[string]string{"en": "related to " + target.name},
					"properties":  []any{map[string]any{"@type": "Property", "name": "since", "schema": "dateTime"}},
				})
				o.Relationships++
			}
		}
		// A component of a capability interface, for one class in five.
		if capabilities > 3 && it.root != "Capability" && rng.IntN(5) == 0 {
			for {
				c := all[rng.IntN(len(all))]
				if c.root == "Capability" {
					contents = append(contents, map[string]any{"@type": "Component", "name": fmt.Sprintf("c%d_capability", i), "schema": c.id})
					o.Components++
					break
				}
			}
		}
		doc["contents"] = contents
		it.doc = doc
		o.MaxDepth = max(o.MaxDepth, it.depth)
		all = append(all, &it)
	}
	// Pairs of classes whose relationships target each other: the upload must put each pair
	// in one batch.
	for k := 0; k+1 < len(all) && o.Pairs < n/100; k += 97 {
		a, b := all[(k+len(roots))%len(all)], all[(k*7+len(roots)+1)%len(all)]
		if a == b || a.root == "Capability" || b.root == "Capability" {
			continue
		}
		for _, e := range [][2]*iface{{a, b}, {b, a}} {
			e[0].doc["contents"] = append(e[0].doc["contents"].([]any), map[string]any{
				"@type": "Relationship", "name": "pairedWith" + strings.NewReplacer(":", "", ";", "").Replace(e[1].id[len("dtmi:org:example:"):]), "target": e[1].id})
			o.Relationships++
		}
		o.Pairs++
	}

	// Files: by root folder, then by depth folder; names from a hash of the id, so the order
	// of the files is not that of the dependencies; one in eight files holds an array.
	for i := 0; i < len(all); {
		it := all[i]
		count := 1
		if rng.IntN(8) == 0 {
			count = min(2+rng.IntN(3), len(all)-i)
		}
		var docs []any
		for _, x := range all[i : i+count] {
			docs = append(docs, x.doc)
		}
		var v any = docs[0]
		if count > 1 {
			v = docs
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return o, fmt.Errorf("encode an interface: %w", err)
		}
		if rng.IntN(10) == 0 {
			b = append([]byte("\xef\xbb\xbf"), b...)
			o.BOMs++
		}
		path := filepath.Join(dir, strings.ToLower(it.root), fmt.Sprintf("level%d", it.depth), fmt.Sprintf("%08x.json", rng.Uint32()))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return o, err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return o, err
		}
		o.Files++
		o.Bytes += int64(len(b))
		i += count
	}
	o.Interfaces = len(all)
	return o, nil
}

// ontologyProperty is the p-th property of the class name: its schema cycles through the
// kinds an ontology uses.
func ontologyProperty(rng *rand.Rand, name string, p int) map[string]any {
	prop := map[string]any{"@type": "Property", "name": fmt.Sprintf("%s_p%d", strings.ToLower(name), p), "writable": true}
	switch rng.IntN(6) {
	case 0:
		prop["schema"] = "double"
	case 1:
		prop["schema"] = "integer"
	case 2:
		prop["schema"] = "string"
	case 3:
		prop["schema"] = "boolean"
	case 4:
		prop["schema"] = map[string]any{"@type": "Enum", "valueSchema": "string", "enumValues": []any{
			map[string]any{"name": "low", "enumValue": "low"},
			map[string]any{"name": "high", "enumValue": "high"},
		}}
	default:
		prop["schema"] = map[string]any{"@type": "Object", "fields": []any{
			map[string]any{"name": "value", "schema": "double"},
			map[string]any{"name": "unit", "schema": "string"},
		}}
	}
	return prop
}
