package mapping

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/twin"
)

// EventsSource is the Definition.Source of a mapping whose input is twinflow's own change
// events (propagation); see EventMessage.
const EventsSource = ingress.EventsSource

// Definition is a mapping as users write it, in the API (PUT /mappings/{name}) and in the
// configuration file. Every expression is CEL; see the package documentation for what it sees.
type Definition struct {
	// Source names the source whose messages the mapping reads, or EventsSource.
	Source string `json:"source"`
	// Condition, when set, is a CEL bool: the mapping applies to a message (or to one target
	// twin, when Condition refers to twin) only when it is true.
	Condition string `json:"condition,omitempty"`
	// TwinID is a CEL string: the id of the twin the message changes. Exactly one of TwinID
	// and TwinIDs is set.
	TwinID string `json:"twinId,omitempty"`
	// TwinIDs is a CEL list of strings: the ids of the twins the message changes.
	TwinIDs string `json:"twinIds,omitempty"`
	// Patch maps a JSON Pointer into the twin (/Temperature, /thermostat/setPoint,
	// /$metadata/Temperature/sourceTime) to the CEL expression giving its value. Each is
	// written with add-or-replace semantics: missing parent objects are created.
	Patch map[string]string `json:"patch,omitempty"`
	// Telemetry, when set, is a CEL expression giving a JSON object sent as the target
	// twin's telemetry.
	Telemetry string `json:"telemetry,omitempty"`
	// CreateTwin, when set, creates a target twin that does not exist yet.
	CreateTwin *CreateTwin `json:"createTwin,omitempty"`
}

// CreateTwin says how a mapping creates a missing target twin.
type CreateTwin struct {
	// Model is the DTMI of the twin's model.
	Model string `json:"model"`
}

// FieldError is one problem of a Definition: the field it concerns, as a path into the
// definition's JSON ("twinId", "patch./Temperature", "createTwin.model"), and what is wrong
// there. Validate and Compile return them joined (errors.Join); callers that nest definitions
// in a larger document prefix Field with their own path.
type FieldError struct {
	Field   string
	Message string
}

// Error returns "field: message".
func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// fieldErrorf builds a *FieldError.
func fieldErrorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// patchField is the field path of the patch entry for path.
func patchField(path string) string { return "patch." + path }

// Validate checks the definition's shape without compiling its expressions, and reports every
// problem as a *FieldError (joined). Compile calls it first.
func (d Definition) Validate() error {
	return errors.Join(d.validate()...)
}

// validate returns every problem of the definition's shape.
func (d Definition) validate() []error {
	var errs []error
	if d.Source == "" {
		errs = append(errs, fieldErrorf("source", "required: a source name, or %s for twinflow's change events", EventsSource))
	}
	switch {
	case d.TwinID == "" && d.TwinIDs == "":
		errs = append(errs, fieldErrorf("twinId", "required: a CEL string giving the target twin's id (or twinIds, a CEL list of ids)"))
	case d.TwinID != "" && d.TwinIDs != "":
		errs = append(errs, fieldErrorf("twinIds", "twinId and twinIds exclude each other; set one"))
	}
	if len(d.Patch) == 0 && d.Telemetry == "" && d.CreateTwin == nil {
		errs = append(errs, fieldErrorf("patch", "the mapping changes nothing: set patch, telemetry or createTwin"))
	}
	errs = append(errs, validatePatchPaths(d.Patch)...)
	if d.CreateTwin != nil {
		if d.CreateTwin.Model == "" {
			errs = append(errs, fieldErrorf("createTwin.model", "required: the DTMI of the model of the twins to create"))
		} else if _, err := dtdl.ParseDTMI(d.CreateTwin.Model); err != nil {
			errs = append(errs, fieldErrorf("createTwin.model", "%q is not a DTMI: %v", d.CreateTwin.Model, err))
		}
	}
	return errs
}

// validatePatchPaths checks each patch path, and that no path lies below another (the value
// of the outer one would decide what the inner one means).
func validatePatchPaths(patch map[string]string) []error {
	var errs []error
	paths := slices.Sorted(maps.Keys(patch))
	for i, p := range paths {
		field := patchField(p)
		if strings.TrimSpace(patch[p]) == "" {
			errs = append(errs, fieldErrorf(field, "the expression is empty"))
		}
		segs, err := twin.SplitPointer(p)
		if err != nil {
			errs = append(errs, fieldErrorf(field, "%q is not a JSON Pointer below the twin's root, such as /Temperature (a ~ in a name is written ~0, a / is written ~1)", p))
			continue
		}
		if msg := checkSegments(segs); msg != "" {
			errs = append(errs, fieldErrorf(field, "%s", msg))
		}
		// Sorted, a path's descendants follow it directly ("/a" < "/a/b" < "/a0").
		for _, q := range paths[i+1:] {
			if !strings.HasPrefix(q, p) {
				break
			}
			if q[len(p)] == '/' {
				errs = append(errs, fieldErrorf(patchField(q), "lies below %s, which the mapping also writes; write one of them", p))
			}
		}
	}
	return errs
}

// checkSegments returns why a patch path cannot be written, or "". Property paths may not
// contain names starting with "$"; the only metadata a mapping writes is a property's
// sourceTime, at /$metadata/<property>/sourceTime or /<component>/$metadata/<property>/sourceTime.
func checkSegments(segs []string) string {
	meta := slices.Index(segs, twin.KeyMetadata)
	switch {
	case meta < 0:
		for _, s := range segs {
			if strings.HasPrefix(s, "$") {
				return fmt.Sprintf("'%s' is not a property name; names starting with $ are reserved", s)
			}
		}
		return ""
	case meta <= 1 && len(segs) == meta+3 && segs[meta+2] == "sourceTime" &&
		!strings.HasPrefix(segs[meta+1], "$") && (meta == 0 || !strings.HasPrefix(segs[0], "$")):
		return ""
	}
	return "only /$metadata/<property>/sourceTime and /<component>/$metadata/<property>/sourceTime can be written below $metadata"
}
