package graph

import (
	"encoding/binary"
	"iter"
	"math"
)

// members are a twin's top-level members (props), packed: for each, in document order, its
// name number, the gap from the end of the member before (from 0 for the first) to the start
// of its value, and the value's length, as uvarints. A member of a typical twin takes three
// bytes instead of a prop's twelve.
type members []byte

// packMembers appends props, in document order, packed to dst.
func packMembers(dst []byte, props []prop) []byte {
	var end uint32
	for _, p := range props {
		dst = binary.AppendUvarint(dst, uint64(p.name))
		dst = binary.AppendUvarint(dst, uint64(p.start-end))
		dst = binary.AppendUvarint(dst, uint64(p.end-p.start))
		end = p.end
	}
	return dst
}

// next decodes the member at m[i:], which follows a member ending at end, and returns it
// with the index of the member after it; ok is false when it is malformed.
func (m members) next(i int, end uint32) (p prop, after int, ok bool) {
	name, n1 := binary.Uvarint(m[i:])
	if n1 <= 0 {
		return p, 0, false
	}
	gap, n2 := binary.Uvarint(m[i+n1:])
	if n2 <= 0 {
		return p, 0, false
	}
	size, n3 := binary.Uvarint(m[i+n1+n2:])
	if n3 <= 0 {
		return p, 0, false
	}
	start := uint64(end) + gap
	if name > math.MaxUint32 || start+size > math.MaxUint32 {
		return p, 0, false
	}
	return prop{name: uint32(name), start: uint32(start), end: uint32(start + size)}, i + n1 + n2 + n3, true
}

// all yields the members, in document order.
func (m members) all() iter.Seq[prop] {
	return func(yield func(prop) bool) {
		var end uint32
		for i := 0; i < len(m); {
			p, after, ok := m.next(i, end)
			if !ok || !yield(p) {
				return
			}
			i, end = after, p.end
		}
	}
}

// valid reports whether m is well formed, with every name number below names.
func (m members) valid(names int) bool {
	var end uint32
	for i := 0; i < len(m); {
		p, after, ok := m.next(i, end)
		if !ok || int(p.name) >= names {
			return false
		}
		i, end = after, p.end
	}
	return true
}
