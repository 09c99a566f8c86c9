package dtdl

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ModelSet is an immutable, resolved set of Interfaces; safe for concurrent use. Parse and
// Without return new sets and never change the one they start from. The zero ModelSet is an
// empty set.
type ModelSet struct {
	ifaces map[string]*Interface
	// schemas holds the complex schemas with a declared @id, for references from later batches.
	schemas map[string]*Schema
	// schemaOwner maps a schema id to the Interface that defines it.
	schemaOwner map[string]string
	// refs maps an Interface to the Interfaces it refers to directly; referrers is the inverse.
	refs      map[string][]string
	referrers map[string][]string
	// children maps an Interface to the Interfaces that extend it directly.
	children map[string][]string
	ids      []string
}

// clone returns a copy of s whose maps can be changed. s may be the zero ModelSet.
func (s *ModelSet) clone() *ModelSet {
	c := &ModelSet{
		ifaces:      maps.Clone(s.ifaces),
		schemas:     maps.Clone(s.schemas),
		schemaOwner: maps.Clone(s.schemaOwner),
		refs:        maps.Clone(s.refs),
	}
	if c.ifaces == nil {
		c.ifaces = map[string]*Interface{}
	}
	if c.schemas == nil {
		c.schemas = map[string]*Schema{}
	}
	if c.schemaOwner == nil {
		c.schemaOwner = map[string]string{}
	}
	if c.refs == nil {
		c.refs = map[string][]string{}
	}
	return c
}

func (s *ModelSet) add(i *Interface) {
	s.ifaces[i.ID] = i
	for _, sc := range i.Schemas {
		s.schemaOwner[sc.ID] = i.ID
	}
}

func (s *ModelSet) link(id string, refs []string) {
	s.refs[id] = refs
}

// finish computes the derived indexes once the Interfaces and their references are in place.
func (s *ModelSet) finish() {
	s.ids = slices.Sorted(maps.Keys(s.ifaces))
	s.referrers = map[string][]string{}
	s.children = map[string][]string{}
	for _, id := range s.ids {
		for _, to := range s.refs[id] {
			s.referrers[to] = append(s.referrers[to], id)
		}
		for _, p := range s.ifaces[id].Extends {
			s.children[p] = append(s.children[p], id)
		}
	}
}

// Interface returns the Interface with the given DTMI.
func (s *ModelSet) Interface(id string) (*Interface, bool) {
	i, ok := s.ifaces[id]
	return i, ok
}

// IDs returns the DTMIs of all Interfaces in the set, sorted.
func (s *ModelSet) IDs() []string { return slices.Clone(s.ids) }

// Len returns the number of Interfaces in the set.
func (s *ModelSet) Len() int { return len(s.ifaces) }

// Ancestors returns everything id extends, transitively, sorted, excluding id.
func (s *ModelSet) Ancestors(id string) []string {
	return s.closure(id, func(x string) []string {
		if i, ok := s.ifaces[x]; ok {
			return i.Extends
		}
		return nil
	})
}

// Descendants returns everything that extends id, transitively, sorted, excluding id.
func (s *ModelSet) Descendants(id string) []string {
	return s.closure(id, func(x string) []string { return s.children[x] })
}

// IsA reports whether id == base or id extends base transitively.
func (s *ModelSet) IsA(id, base string) bool {
	if id == base {
		return true
	}
	// Walk the hierarchy once, remembering what was seen: hierarchies are DAGs in which the
	// number of paths can grow exponentially with depth.
	seen := map[string]bool{id: true}
	stack := []string{id}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i, ok := s.ifaces[x]
		if !ok {
			continue
		}
		for _, p := range i.Extends {
			if p == base {
				return true
			}
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	return false
}

// Dependencies returns the DTMIs of the other Interfaces id refers to (extends, component
// schemas, relationship targets, owners of schemas it uses), transitively, sorted. Targets that
// are not in the set are included as written.
func (s *ModelSet) Dependencies(id string) []string {
	return s.closure(id, func(x string) []string { return s.refs[x] })
}

// ReferencedBy returns the Interfaces in the set that refer to id directly (extends, component
// schema, relationship target, use of a schema id defines), sorted.
func (s *ModelSet) ReferencedBy(id string) []string {
	return slices.Clone(s.referrers[id])
}

// closure walks next from id and returns everything reached, sorted, excluding id.
func (s *ModelSet) closure(id string, next func(string) []string) []string {
	seen := map[string]bool{id: true}
	stack := []string{id}
	var out []string
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, y := range next(x) {
			if !seen[y] {
				seen[y] = true
				out = append(out, y)
				stack = append(stack, y)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Without returns a new set without the Interfaces ids. It fails, naming the referrers, when
// an Interface that remains refers to one of them; the set is then unchanged. Unknown ids are
// ignored.
func (s *ModelSet) Without(ids ...string) (*ModelSet, error) {
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	var problems []Problem
	for _, id := range ids {
		var users []string
		for _, r := range s.referrers[id] {
			if !gone[r] {
				users = append(users, r)
			}
		}
		if len(users) > 0 {
			problems = append(problems, Problem{
				Element: id,
				Message: fmt.Sprintf("is referred to by %s, which would remain", strings.Join(users, ", ")),
			})
		}
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	out := s.clone()
	for id := range gone {
		i, ok := out.ifaces[id]
		if !ok {
			continue
		}
		for _, sc := range i.Schemas {
			delete(out.schemas, sc.ID)
			delete(out.schemaOwner, sc.ID)
		}
		delete(out.ifaces, id)
		delete(out.refs, id)
	}
	for sid, owner := range out.schemaOwner {
		if gone[owner] {
			delete(out.schemaOwner, sid)
			delete(out.schemas, sid)
		}
	}
	out.finish()
	return out, nil
}
