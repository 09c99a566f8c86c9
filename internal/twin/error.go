// Package twin holds the rules of digital twin documents, free of I/O: ADT-shaped errors, ETags
// and If-Match conditions, JSON Patch parsing and application with $metadata bookkeeping, and
// the stored document shapes of twins and relationships.
//
// Documents are the Go values encoding/json produces when decoding with UseNumber: nil, bool,
// json.Number, string, []any and map[string]any.
package twin

import (
	"fmt"
	"net/http"
)

// The ADT error codes twinflow returns.
const (
	CodeBadRequest                = "BadRequest"
	CodeComponentNotFound         = "ComponentNotFound"
	CodeDigitalTwinNotFound       = "DigitalTwinNotFound"
	CodeDTDLParserError           = "DTDLParserError"
	CodeInvalidArgument           = "InvalidArgument"
	CodeInvalidRelationship       = "InvalidRelationship"
	CodeJSONPatchInvalid          = "JsonPatchInvalid"
	CodeLimitExceeded             = "LimitExceeded"
	CodeMissingArgument           = "MissingArgument"
	CodeModelAlreadyExists        = "ModelAlreadyExists"
	CodeModelDecommissioned       = "ModelDecommissioned"
	CodeModelNotFound             = "ModelNotFound"
	CodeModelReferencesNotDeleted = "ModelReferencesNotDeleted"
	CodeModelVersionNotSupported  = "ModelVersionNotSupported"
	CodeOperationNotAllowed       = "OperationNotAllowed"
	CodePreconditionFailed        = "PreconditionFailed"
	CodeRelationshipNotFound      = "RelationshipNotFound"
	CodeRelationshipsNotDeleted   = "RelationshipsNotDeleted"
	CodeTargetTwinNotFound        = "TargetTwinNotFound"
	CodeTwinLimitReached          = "TwinLimitReached"
	CodeValidationFailed          = "ValidationFailed"
)

// patchHelp ends every JsonPatchInvalid message, as ADT's do.
const patchHelp = " Please provide a valid patch document. See section on update apis in the documentation http://aka.ms/adtv2twins."

// Error is an ADT-shaped failure: the HTTP status, the ADT error code, a message and optional
// details (each itself an Error, whose Status is not used). The API layer finds it with
// errors.As and renders it as {"error":{"code","message","details"}}.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []Error
}

// Error returns the code and the message.
func (e *Error) Error() string {
	return e.Code + ": " + e.Message
}

// newError builds an Error without details.
func newError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// TwinNotFound is 404 DigitalTwinNotFound with ADT's message.
func TwinNotFound(id string) *Error {
	return newError(http.StatusNotFound, CodeDigitalTwinNotFound, fmt.Sprintf(
		"There is no digital twin instance that exists with the ID %s. Please verify that the twin id is valid and ensure that the twin is not deleted. See section on querying the twins https://aka.ms/adtv2query.", id))
}

// TargetTwinNotFound is 404 TargetTwinNotFound: a relationship's $targetId names no twin.
func TargetTwinNotFound(id string) *Error {
	return newError(http.StatusNotFound, CodeTargetTwinNotFound, fmt.Sprintf(
		"There is no digital twin instance that exists with the ID %s to be the target of the relationship. Please verify that the target twin id is valid. See section on querying the twins https://aka.ms/adtv2query.", id))
}

// ComponentNotFound is 404 ComponentNotFound: the twin's model declares no such component, or
// the twin does not hold it.
func ComponentNotFound(twinID, component string) *Error {
	return newError(http.StatusNotFound, CodeComponentNotFound, fmt.Sprintf(
		"There is no component %s on the digital twin %s. Please verify that the component name is valid and declared by the twin's model. See section on components https://aka.ms/adtv2twins.", component, twinID))
}

// RelationshipNotFound is 404 RelationshipNotFound.
func RelationshipNotFound(sourceID, id string) *Error {
	return newError(http.StatusNotFound, CodeRelationshipNotFound, fmt.Sprintf(
		"There is no relationship with the ID %s on the digital twin %s. Please verify that the relationship id is valid and ensure that the relationship is not deleted. See section on retrieving relationships https://aka.ms/adtv2twins.", id, sourceID))
}

// ModelNotFound is 404 ModelNotFound with ADT's message.
func ModelNotFound(id string) *Error {
	return newError(http.StatusNotFound, CodeModelNotFound, fmt.Sprintf(
		"There is no Model(s) available that matches the provided id(s) %s. Check that the Model ID provided is valid by doing a Model_List API call.", id))
}

// ModelAlreadyExists is 409 ModelAlreadyExists with ADT's message.
func ModelAlreadyExists(id string) *Error {
	return newError(http.StatusConflict, CodeModelAlreadyExists, fmt.Sprintf(
		"Could not add model %s as it already exists. Use Model_List API to view models that already exist. See the Swagger example.(http://aka.ms/ModelListSwSmpl)", id))
}

// ModelReferencesNotDeleted is 409 ModelReferencesNotDeleted: other models refer to id.
func ModelReferencesNotDeleted(id string, referrers []string) *Error {
	return newError(http.StatusConflict, CodeModelReferencesNotDeleted, fmt.Sprintf(
		"Could not delete model %s as it is referenced by other models %v. Delete the referencing models first.", id, referrers))
}

// ModelDecommissioned is 400 ModelDecommissioned: a new twin document names a decommissioned
// model.
func ModelDecommissioned(id string) *Error {
	return newError(http.StatusBadRequest, CodeModelDecommissioned, fmt.Sprintf(
		"The model %s is decommissioned. Decommissioned models cannot be used to create twins.", id))
}

// ModelVersionNotSupported is 400 ModelVersionNotSupported: a model's @context names no DTDL
// version twinflow understands.
func ModelVersionNotSupported(msg string) *Error {
	return newError(http.StatusBadRequest, CodeModelVersionNotSupported, msg)
}

// DTDLParserError is 400 DTDLParserError: a batch of models does not parse or resolve.
func DTDLParserError(msg string) *Error {
	return newError(http.StatusBadRequest, CodeDTDLParserError, msg)
}

// RelationshipsNotDeleted is 400 RelationshipsNotDeleted with ADT's message.
func RelationshipsNotDeleted(id string) *Error {
	return newError(http.StatusBadRequest, CodeRelationshipsNotDeleted, fmt.Sprintf(
		"Twin %s has active relationships. Cannot delete a twin unless all the relationships are deleted. Please ensure that the active relationships on the twin are deleted. See section on retrieving relationships https://aka.ms/adtv2twins.", id))
}

// TwinLimitReached is 400 TwinLimitReached: the instance holds as many twins as it may.
func TwinLimitReached(limit int) *Error {
	return newError(http.StatusBadRequest, CodeTwinLimitReached, fmt.Sprintf(
		"The instance has reached its limit of %d twins. Delete twins before creating more.", limit))
}

// InvalidArgument is 400 InvalidArgument.
func InvalidArgument(msg string) *Error {
	return newError(http.StatusBadRequest, CodeInvalidArgument, msg)
}

// MissingArgument is 400 MissingArgument.
func MissingArgument(msg string) *Error {
	return newError(http.StatusBadRequest, CodeMissingArgument, msg)
}

// LimitExceeded is 400 LimitExceeded.
func LimitExceeded(msg string) *Error {
	return newError(http.StatusBadRequest, CodeLimitExceeded, msg)
}

// InvalidRelationship is 400 InvalidRelationship.
func InvalidRelationship(msg string) *Error {
	return newError(http.StatusBadRequest, CodeInvalidRelationship, msg)
}

// OperationNotAllowed is 400 OperationNotAllowed.
func OperationNotAllowed(msg string) *Error {
	return newError(http.StatusBadRequest, CodeOperationNotAllowed, msg)
}

// JSONPatchInvalid is 400 JsonPatchInvalid. reason is the first sentence; ADT's advice to
// provide a valid patch document is appended.
func JSONPatchInvalid(reason string) *Error {
	return newError(http.StatusBadRequest, CodeJSONPatchInvalid, reason+patchHelp)
}

// PreconditionFailed is 412 PreconditionFailed.
func PreconditionFailed(msg string) *Error {
	return newError(http.StatusPreconditionFailed, CodePreconditionFailed, msg)
}

// ValidationFailed is 400 ValidationFailed with msg (ADT says "Invalid twin specified") and one
// ValidationFailed detail per entry of details.
func ValidationFailed(msg string, details ...string) *Error {
	e := newError(http.StatusBadRequest, CodeValidationFailed, msg)
	for _, d := range details {
		e.Details = append(e.Details, Error{Code: CodeValidationFailed, Message: d})
	}
	return e
}

// InvalidTwin is ValidationFailed with ADT's "Invalid twin specified" message.
func InvalidTwin(details ...string) *Error {
	return ValidationFailed("Invalid twin specified", details...)
}

// InvalidRelationshipProperties is ValidationFailed for a relationship's properties.
func InvalidRelationshipProperties(details ...string) *Error {
	return ValidationFailed("Invalid relationship specified", details...)
}

// ModelUnavailable is ADT's ValidationFailed for a twin whose model is not loaded:
// "<dtmi> or one of its dependencies does not exist.".
func ModelUnavailable(modelID string) *Error {
	return InvalidTwin(modelID + " or one of its dependencies does not exist.")
}
