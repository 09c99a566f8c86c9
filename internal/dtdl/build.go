package dtdl

import "slices"

// owner returns the id of the Interface that defines e.
func owner(e *elem) string {
	for x := e; x != nil; x = x.parent {
		if x.cls == clsInterface {
			return x.id
		}
	}
	return ""
}

// build turns the resolved batch into Interfaces and returns base + batch. It runs only on a
// batch without problems, so every reference resolves and every hierarchy is acyclic. Base
// Interfaces are shared, not copied: model values are immutable once in a ModelSet.
func (r *resolver) build() *ModelSet {
	s := r.base.clone()
	for _, e := range r.roots {
		s.add(r.iface(e))
	}
	for _, e := range r.elems {
		if e.declared && e.cls.isComplexSchema() {
			s.schemas[e.id] = r.schema(ref{id: e.id, el: e}, e.version)
			s.schemaOwner[e.id] = owner(e)
		}
	}
	for _, e := range r.roots {
		s.link(e.id, r.references(e))
	}
	s.finish()
	return s
}

// references returns the ids of other Interfaces root refers to directly: extends, component
// schemas, relationship targets and the owners of schemas it uses.
func (r *resolver) references(root *elem) []string {
	refs := map[string]bool{}
	var walk func(e *elem)
	walk = func(e *elem) {
		if e.cls == clsRelationship && e.target != "" {
			refs[e.target] = true
		}
		for _, pv := range e.refs {
			for _, rf := range pv.refs {
				if rf.el != nil {
					if rf.el.cls == clsInterface {
						refs[rf.el.id] = true
						continue
					}
					walk(rf.el)
					continue
				}
				if rf.id == "" {
					continue
				}
				t, _ := r.lookup(rf.id)
				switch {
				case t.iface != nil:
					refs[t.iface.ID] = true
				case t.el != nil && t.el.cls == clsInterface:
					refs[t.el.id] = true
				case t.el != nil:
					refs[owner(t.el)] = true
				case t.schema != nil:
					refs[r.base.schemaOwner[t.schema.ID]] = true
				}
			}
		}
	}
	walk(root)
	delete(refs, root.id)
	delete(refs, "")
	out := make([]string, 0, len(refs))
	for id := range refs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// iface builds the Interface of e (memoized). Its content maps start as the union of its
// parents' (already flattened) maps, then its own contents are added: names are unique across
// the hierarchy (checkContents), so nothing is overwritten except a content inherited along
// two paths, which is the same element.
func (r *resolver) iface(e *elem) *Interface {
	if i, ok := e.built.(*Interface); ok {
		return i
	}
	i := &Interface{
		ID:            e.id,
		Version:       e.version,
		DisplayName:   e.displayName,
		Description:   e.description,
		Comment:       e.comment,
		Properties:    map[string]*Property{},
		Telemetries:   map[string]*Telemetry{},
		Commands:      map[string]*Command{},
		Relationships: map[string]*Relationship{},
		Components:    map[string]*Component{},
	}
	e.built = i
	for _, t := range r.extendsTargets(e) {
		var p *Interface
		if t.el != nil {
			p = r.iface(t.el)
		} else {
			p = t.iface
		}
		i.Extends = append(i.Extends, p.ID)
		for n, c := range p.Properties {
			i.Properties[n] = c
		}
		for n, c := range p.Telemetries {
			i.Telemetries[n] = c
		}
		for n, c := range p.Commands {
			i.Commands[n] = c
		}
		for n, c := range p.Relationships {
			i.Relationships[n] = c
		}
		for n, c := range p.Components {
			i.Components[n] = c
		}
	}
	for _, rf := range e.values(propContents) {
		c := rf.el
		if c == nil {
			t, _ := r.lookup(rf.id)
			c = t.el
		}
		if c == nil {
			continue
		}
		switch c.cls {
		case clsProperty:
			i.Properties[c.name] = r.property(c, e.id)
		case clsTelemetry:
			i.Telemetries[c.name] = &Telemetry{
				ID: c.id, Name: c.name, DisplayName: c.displayName, Description: c.description,
				Comment: c.comment, Schema: r.schemaOf(c), Types: c.typeNames, Unit: c.unit,
				Annotates: c.annotates, DefinedIn: e.id,
			}
		case clsCommand:
			i.Commands[c.name] = &Command{
				ID: c.id, Name: c.name, DisplayName: c.displayName, Description: c.description,
				Comment: c.comment, Request: r.payload(c, propRequest), Response: r.payload(c, propResponse),
				DefinedIn: e.id,
			}
		case clsRelationship:
			rel := &Relationship{
				ID: c.id, Name: c.name, DisplayName: c.displayName, Description: c.description,
				Comment: c.comment, Target: c.target, MinMultiplicity: c.minMult,
				MaxMultiplicity: c.maxMult, Writable: c.writable,
				Properties: map[string]*Property{}, DefinedIn: e.id,
			}
			for _, pr := range c.values(propProperties) {
				pe := pr.el
				if pe == nil {
					t, _ := r.lookup(pr.id)
					pe = t.el
				}
				if pe != nil {
					rel.Properties[pe.name] = r.property(pe, e.id)
				}
			}
			i.Relationships[c.name] = rel
		case clsComponent:
			comp := &Component{
				ID: c.id, Name: c.name, DisplayName: c.displayName, Description: c.description,
				Comment: c.comment, DefinedIn: e.id,
			}
			for _, s := range c.values(propSchema) {
				if s.el != nil {
					comp.Schema = r.iface(s.el)
				} else if t, ok := r.lookup(s.id); ok {
					if t.el != nil {
						comp.Schema = r.iface(t.el)
					} else {
						comp.Schema = t.iface
					}
				}
			}
			i.Components[c.name] = comp
		}
	}
	for _, rf := range e.values(propSchemas) {
		if rf.el != nil {
			i.Schemas = append(i.Schemas, r.schema(rf, e.version))
		}
	}
	return i
}

// property builds a Property (memoized: a Property is shared by every Interface that
// inherits it).
func (r *resolver) property(c *elem, definedIn string) *Property {
	if p, ok := c.built.(*Property); ok {
		return p
	}
	p := &Property{
		ID: c.id, Name: c.name, DisplayName: c.displayName, Description: c.description,
		Comment: c.comment, Schema: r.schemaOf(c), Writable: c.writable, Types: c.typeNames,
		Unit: c.unit, Annotates: c.annotates, Overrides: c.overrides, DefinedIn: definedIn,
	}
	c.built = p
	return p
}

// payload builds the request or response of a Command.
func (r *resolver) payload(c *elem, q prop) *Field {
	for _, rf := range c.values(q) {
		pe := rf.el
		if pe == nil {
			t, _ := r.lookup(rf.id)
			pe = t.el
		}
		if pe != nil {
			return r.field(pe)
		}
	}
	return nil
}

// field builds a Field from a Field, MapKey, MapValue or command payload element (memoized).
func (r *resolver) field(e *elem) *Field {
	if f, ok := e.built.(*Field); ok {
		return f
	}
	f := &Field{ID: e.id, Name: e.name, DisplayName: e.displayName, Description: e.description}
	e.built = f
	f.Schema = r.schemaOf(e)
	return f
}

// schemaOf returns the resolved schema of a schema-holding element.
func (r *resolver) schemaOf(e *elem) *Schema {
	for _, rf := range e.values(propSchema) {
		return r.schema(rf, e.version)
	}
	if e.cls == clsMapKey {
		return standardSchemas[e.version][KindString]
	}
	return nil
}

// schema resolves a schema reference to its Schema: a shared standard schema, a schema of the
// base, or one built from the batch (memoized, so a schema referred to from several places is
// one value).
func (r *resolver) schema(rf ref, version int) *Schema {
	if rf.builtin != nil {
		return rf.builtin
	}
	if rf.el == nil {
		if rf.id == "" {
			return standardSchemas[version][rf.std]
		}
		t, _ := r.lookup(rf.id)
		if t.schema != nil {
			return t.schema
		}
		if t.el == nil {
			return nil
		}
		rf.el = t.el
	}
	e := rf.el
	if s, ok := e.built.(*Schema); ok {
		return s
	}
	s := &Schema{ID: e.id, DisplayName: e.displayName, Description: e.description, Comment: e.comment}
	e.built = s
	switch e.cls {
	case clsArray:
		s.Kind = KindArray
		for _, c := range e.values(propElementSchema) {
			s.ElementSchema = r.schema(c, e.version)
		}
	case clsEnum:
		s.Kind = KindEnum
		s.ValueSchema = e.valueSchema
		for _, c := range e.values(propEnumValues) {
			v := c.el
			if v == nil {
				t, _ := r.lookup(c.id)
				v = t.el
			}
			if v != nil {
				s.EnumValues = append(s.EnumValues, &EnumValue{
					ID: v.id, Name: v.name, DisplayName: v.displayName, Description: v.description, Value: v.enumValue,
				})
			}
		}
	case clsMap:
		s.Kind = KindMap
		for _, c := range e.values(propMapKey) {
			if c.el != nil {
				s.MapKey = r.field(c.el)
			}
		}
		for _, c := range e.values(propMapValue) {
			if c.el != nil {
				s.MapValue = r.field(c.el)
			}
		}
	case clsObject:
		s.Kind = KindObject
		for _, c := range e.values(propFields) {
			f := c.el
			if f == nil {
				t, _ := r.lookup(c.id)
				f = t.el
			}
			if f != nil {
				s.Fields = append(s.Fields, r.field(f))
			}
		}
	}
	return s
}

// standardSchemas holds the shared standard schemas of each DTDL version, indexed by Kind.
var standardSchemas = [4][]*Schema{2: newStandardSchemas(2), 3: newStandardSchemas(3)}

func newStandardSchemas(v int) []*Schema {
	out := make([]*Schema, KindMultiPolygon+1)
	for k := KindBoolean; k <= KindMultiPolygon; k++ {
		out[k] = &Schema{Kind: k, ID: standardSchemaID(k, v)}
	}
	return out
}
