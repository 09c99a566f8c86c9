package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/source"
)

// testDefinition is the mapping language of the API's tests: the twin is the body's member
// named by twin, each property of set gets the body's member it names, and create names the
// model of twins to create.
type testDefinition struct {
	Source string            `json:"source"`
	Twin   string            `json:"twin"`
	Set    map[string]string `json:"set"`
	Create string            `json:"create"`
}

// testMapping is a compiled testDefinition.
type testMapping struct{ def testDefinition }

// compileTest is the tests' source.Compiler.
func compileTest(raw json.RawMessage) (source.Compiled, error) {
	var def testDefinition
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&def); err != nil {
		return nil, err
	}
	var errs []error
	if def.Twin == "" {
		errs = append(errs, errors.New("twin: required"))
	}
	if len(def.Set) == 0 {
		errs = append(errs, errors.New("set: required"))
	}
	return testMapping{def}, errors.Join(errs...)
}

// Map implements ingress.Mapper.
func (t testMapping) Map(_ context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
	var body map[string]any
	if err := json.Unmarshal(m.Body, &body); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object")
	}
	id, ok := body[t.def.Twin].(string)
	if !ok {
		return nil, fmt.Errorf("the body has no string %s", t.def.Twin)
	}
	var ops []map[string]any
	for _, prop := range slices.Sorted(maps.Keys(t.def.Set)) {
		if v, ok := body[t.def.Set[prop]]; ok {
			ops = append(ops, map[string]any{"op": "add", "path": "/" + prop, "value": v})
		}
	}
	patch, _ := json.Marshal(ops)
	return []ingress.Change{{TwinID: id, CreateModel: t.def.Create, Patch: patch}}, nil
}

// DryRun implements source.Compiled: the changes, with each patch as JSON.
func (t testMapping) DryRun(ctx context.Context, m ingress.Message, twins ingress.TwinReader) (any, error) {
	changes, err := t.Map(ctx, m, twins)
	if err != nil {
		return nil, err
	}
	type change struct {
		TwinID      string          `json:"twinId"`
		CreateModel string          `json:"createModel,omitempty"`
		Patch       json.RawMessage `json:"patch"`
	}
	out := make([]change, len(changes))
	for i, c := range changes {
		out[i] = change{TwinID: c.TwinID, CreateModel: c.CreateModel, Patch: c.Patch}
	}
	return out, nil
}
