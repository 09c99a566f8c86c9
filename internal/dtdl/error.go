package dtdl

import (
	"fmt"
	"strings"
)

// Options controls parsing. The zero value is DisallowUndefinedExtensions.
type Options struct {
	// AllowUndefinedExtensions accepts @context entries this package does not implement
	// (anything but the DTDL v2/v3 contexts and the QuantitativeTypes, Historization,
	// Annotation, Overriding and IoT Central extensions). Within the scope of such a context,
	// elements may then carry co-types no context defines and, on an element with such a
	// co-type, properties no context defines. Without it an undefined context is an error.
	// (DTDL v2 documents always tolerate undefined co-type terms, as the v2 metamodel says.)
	AllowUndefinedExtensions bool
}

// Error is the error Parse and Without return for an invalid batch. It lists every problem
// found, so a modeller can fix them all at once.
type Error struct {
	// Problems holds every problem found, in document order.
	Problems []Problem
	// Unresolved holds the DTMIs referred to but defined neither in the batch nor in the base,
	// sorted.
	Unresolved []string
}

// Error returns the problems one per line, prefixed by a count.
func (e *Error) Error() string {
	var b strings.Builder
	n := len(e.Problems)
	if n == 1 {
		b.WriteString("invalid DTDL: 1 problem")
	} else {
		fmt.Fprintf(&b, "invalid DTDL: %d problems", n)
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Problem is one violation of a DTDL rule.
type Problem struct {
	// Element is the DTMI of the element concerned, or a JSON path such as
	// "dtmi:ex:a;1/contents[2]/schema" when it has no identifier.
	Element string
	// Property is the DTDL property concerned ("schema", "@type", "name", ...); may be empty.
	Property string
	// Message says what is wrong in words a modeller understands, naming the rule.
	Message string
}

// String formats the problem as "element: property: message".
func (p Problem) String() string {
	if p.Property == "" {
		return p.Element + ": " + p.Message
	}
	return p.Element + ": " + p.Property + ": " + p.Message
}
