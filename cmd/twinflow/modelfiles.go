package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxModelBatch is the most models one POST /models takes (ADT's limit).
const maxModelBatch = 250

// localModel is one DTDL interface read from a file to upload.
type localModel struct {
	id   string
	path string // the file it came from
	raw  json.RawMessage
	// refs are the DTMIs the interface names outside its own "@id"s: the interfaces it
	// extends, its component schemas, relationship targets, schemas defined elsewhere.
	refs []string
	// defines are the "@id"s of the interface and of the elements and schemas inside it.
	defines []string
}

// modelFileExts are the extensions of the files a folder upload reads.
var modelFileExts = []string{".json", ".dtdl"}

// modelPaths returns the files to read for paths: each file as given, and for each folder
// the files below it, recursively, whose names end in .json or .dtdl, in lexical order.
func modelPaths(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && slices.Contains(modelFileExts, strings.ToLower(filepath.Ext(path))) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read the folder %s: %w", p, err)
		}
	}
	return files, nil
}

// readModelFiles reads the interfaces of files: each file holds one interface or an array of
// them, in UTF-8 with or without a byte-order mark. The error names the file, and the model
// when it is one model that is wrong; an "@id" defined twice names both files.
func readModelFiles(files []string) ([]localModel, error) {
	var models []localModel
	where := make(map[string]string) // model id → file
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms, err := parseModels(path, trimBOM(b))
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if other, ok := where[m.id]; ok {
				return nil, fmt.Errorf("%s: the model %s is also defined in %s", path, m.id, other)
			}
			where[m.id] = path
		}
		models = append(models, ms...)
	}
	return models, nil
}

// parseModels reads the interfaces of one file's content b.
func parseModels(path string, b []byte) ([]localModel, error) {
	b = bytes.TrimSpace(b)
	if err := checkJSON(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var docs []json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &docs); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		docs = []json.RawMessage{b}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: the file holds an empty array, no model", path)
	}
	out := make([]localModel, 0, len(docs))
	for i, d := range docs {
		m, err := parseModel(d)
		if err != nil {
			if len(docs) > 1 {
				return nil, fmt.Errorf("%s: model %d of %d: %w", path, i+1, len(docs), err)
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.path = path
		out = append(out, m)
	}
	return out, nil
}

// checkJSON reports where b is not JSON, as a line and column.
func checkJSON(b []byte) error {
	var v any
	err := json.Unmarshal(b, &v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(b, se.Offset-1) // Offset counts the bad byte

		return fmt.Errorf("not valid JSON at line %d, column %d: %v", line, col, se)
	}
	return fmt.Errorf("not valid JSON: %w", err)
}

// lineCol returns the 1-based line and column of the byte at offset in b.
func lineCol(b []byte, offset int64) (line, col int) {
	offset = max(0, min(offset, int64(len(b))))
	before := b[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// parseModel reads one interface: it must be a JSON object with a string "@id" (a DTMI),
// "@type" "Interface" and an "@context".
func parseModel(raw json.RawMessage) (localModel, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return localModel{}, errors.New("a model must be a JSON object (an interface), or the file an array of them")
	}
	id, _ := doc["@id"].(string)
	if id == "" {
		return localModel{}, errors.New(`the model has no "@id"`)
	}
	name := "the model " + id
	if !strings.HasPrefix(id, "dtmi:") {
		return localModel{}, fmt.Errorf(`%s: its "@id" is not a DTMI (dtmi:...;1)`, name)
	}
	if !hasType(doc["@type"], "Interface") {
		return localModel{}, fmt.Errorf(`%s: its "@type" is %v, not "Interface"`, name, doc["@type"])
	}
	if _, ok := doc["@context"]; !ok {
		return localModel{}, fmt.Errorf(`%s: it has no "@context" (e.g. "dtmi:dtdl:context;3")`, name)
	}
	m := localModel{id: id, raw: raw}
	collectDTMIs(doc, "", &m)
	m.refs = slices.DeleteFunc(slices.Compact(sortedCopy(m.refs)), func(r string) bool { return slices.Contains(m.defines, r) })
	return m, nil
}

// hasType reports whether the "@type" value v is want or an array holding it.
func hasType(v any, want string) bool {
	switch t := v.(type) {
	case string:
		return t == want
	case []any:
		return slices.Contains(t, any(want))
	}
	return false
}

// collectDTMIs adds to m the DTMIs that v defines (as "@id") and those it names elsewhere;
// key is the member name v is the value of. "@context" values are DTDL's own.
func collectDTMIs(v any, key string, m *localModel) {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if k == "@context" {
				continue
			}
			collectDTMIs(child, k, m)
		}
	case []any:
		for _, child := range t {
			collectDTMIs(child, key, m)
		}
	case string:
		if !strings.HasPrefix(t, "dtmi:") {
			return
		}
		if key == "@id" {
			m.defines = append(m.defines, t)
		} else {
			m.refs = append(m.refs, t)
		}
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// uploadBatches orders models so that every model comes after the models of the set it
// depends on, and cuts them into batches of at most size models, each to be uploaded after
// the ones before it. Models that depend on each other (a cycle, e.g. two interfaces whose
// relationships target each other) go in the same batch; a cycle of more than size models
// cannot be uploaded and is an error. Dependencies on models outside the set (on the
// server already, or DTDL's own) are not ordered.
func uploadBatches(models []localModel, size int) ([][]localModel, error) {
	owner := make(map[string]int, len(models)) // DTMI defined → index of its model
	for i, m := range models {
		for _, d := range m.defines {
			owner[d] = i
		}
		owner[m.id] = i
	}
	deps := make([][]int, len(models))
	for i, m := range models {
		for _, r := range m.refs {
			if j, ok := owner[r]; ok && j != i && !slices.Contains(deps[i], j) {
				deps[i] = append(deps[i], j)
			}
		}
	}
	var batches [][]localModel
	var cur []localModel
	for _, comp := range stronglyConnected(deps) {
		if len(comp) > size {
			ids := make([]string, len(comp))
			for k, i := range comp {
				ids[k] = models[i].id
			}
			return nil, fmt.Errorf("%d models depend on each other, more than the %d one upload takes: %s",
				len(comp), size, strings.Join(ids, ", "))
		}
		if len(cur)+len(comp) > size {
			batches = append(batches, cur)
			cur = nil
		}
		for _, i := range comp {
			cur = append(cur, models[i])
		}
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	return batches, nil
}

// stronglyConnected returns the strongly connected components of the graph whose node i has
// edges to deps[i], each component after every component it has an edge to (Tarjan's
// algorithm, which emits them in that order), the nodes of each in ascending order. It
// iterates rather than recurses, so a long extends chain cannot overflow the stack.
func stronglyConnected(deps [][]int) [][]int {
	n := len(deps)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var (
		stack []int
		comps [][]int
		next  int
	)
	type frame struct{ node, edge int }
	for start := range n {
		if index[start] >= 0 {
			continue
		}
		call := []frame{{start, 0}}
		index[start], low[start] = next, next
		next++
		stack = append(stack, start)
		onStack[start] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.node
			if f.edge < len(deps[v]) {
				w := deps[v][f.edge]
				f.edge++
				switch {
				case index[w] < 0:
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				case onStack[w]:
					low[v] = min(low[v], index[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].node
				low[p] = min(low[p], low[v])
			}
			if low[v] == index[v] {
				var comp []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				slices.Sort(comp)
				comps = append(comps, comp)
			}
		}
	}
	return comps
}
