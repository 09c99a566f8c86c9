// Package twin holds the rules of digital twin documents, free of I/O: ADT-shaped errors, ETags
// and If-Match conditions, JSON Patch parsing and application with $metadata bookkeeping, and
// the stored document shapes of twins and relationships.
//
// Documents are the Go values encoding/json produces when decoding with UseNumber: nil, bool,
// json.Number, string, []any and map[string]any.
package twin

import (
	"fmt"
	"strings"
)

// Kind names a failure. Each kind is one ADT error code; the API layer maps kinds to HTTP
// statuses and ADT codes, so the domain stays free of HTTP. The zero Kind names no failure.
type Kind int

// The failures twinflow reports. The first group comes from the rules of twins, relationships
// and models; the second from the API itself (its routes, endpoints, queries and requests).
const (
	KindTwinNotFound                     Kind = iota + 1 // the twin does not exist
	KindTargetTwinNotFound                               // a relationship's $targetId names no twin
	KindComponentNotFound                                // the twin has no such component
	KindRelationshipNotFound                             // the relationship does not exist
	KindModelNotFound                                    // the model does not exist
	KindModelAlreadyExists                               // a model with the id exists already
	KindModelReferencesNotDeleted                        // other models refer to the model
	KindModelReferencesNotDecommissioned                 // models that are not decommissioned refer to the model
	KindModelDecommissioned                              // a new twin names a decommissioned model
	KindModelVersionNotSupported                         // a model's DTDL version is unknown
	KindDTDLParserError                                  // a batch of models does not parse or resolve
	KindRelationshipsNotDeleted                          // the twin still has relationships
	KindTwinLimitReached                                 // the instance holds as many twins as it may
	KindInvalidArgument                                  // a request argument is malformed
	KindMissingArgument                                  // a required argument is missing
	KindLimitExceeded                                    // a size or count limit is exceeded
	KindInvalidRelationship                              // the relationship breaks its model's rules
	KindOperationNotAllowed                              // the operation is not allowed on the resource
	KindJSONPatchInvalid                                 // a JSON Patch is malformed or does not apply
	KindPreconditionFailed                               // an If-Match or If-None-Match condition fails
	KindValidationFailed                                 // a document breaks its model
	KindBadRequest                                       // the request is malformed otherwise

	KindEventRouteNotFound        // the event route does not exist
	KindEventRouteEndpointInvalid // an event route names no usable endpoint
	KindEventRouteFilterInvalid   // an event route's filter is missing or malformed
	KindEventRouteIDInvalid       // an event route id is malformed
	KindEndpointNotFound          // the endpoint does not exist
	KindEndpointInUse             // event routes still send to the endpoint
	KindEndpointValidationFailed  // the endpoint's destination refused validation
	KindDeadLetterNotFound        // the dead letter does not exist
	KindImportJobNotFound         // the import job does not exist
	KindDeleteJobNotFound         // the delete job does not exist
	KindJobLimitReached           // another bulk job has not finished
	KindSourceNotFound            // the ingress source does not exist
	KindSourceInUse               // mappings still read the source
	KindSourceNotRunning          // the source cannot take messages now
	KindMappingNotFound           // the mapping does not exist
	KindDetectorNotFound          // the anomaly detector does not exist
	KindKeyNotFound               // the API key does not exist
	KindQueryInvalid              // a query does not parse or compile
	KindTimeout                   // a query or a job ran out of time
	KindQuotaReached              // queries come faster than the configured rate
	KindTooManyRequests           // twin requests come faster than a configured limit
	KindAPIVersionMissing         // the request has no api-version
	KindAPIVersionUnsupported     // the request's api-version is unknown
	KindMediaTypeUnsupported      // the request body's media type is not accepted
	KindRequestTimeout            // the request body did not arrive in time
	KindHeaderTooLarge            // the request's header is larger than allowed
	KindHostNotAllowed            // the request's Host names no host the server answers to
	KindUnauthorized              // the request carries no credential the server accepts
	KindForbidden                 // the request's identity lacks the role the operation needs
	KindMethodNotAllowed          // the path does not serve the method
	KindPathNotFound              // no resource has the path
	KindInternal                  // the service failed; the cause is logged, not reported
	KindInsufficientStorage       // the disk is full: only deletes are written until space is freed
	KindServiceUnavailable        // the service cannot write now and is stopping or starting

	kindEnd // one past the last Kind
)

// kindNames holds each Kind's name, as String returns it.
var kindNames = [...]string{
	KindTwinNotFound:                     "TwinNotFound",
	KindTargetTwinNotFound:               "TargetTwinNotFound",
	KindComponentNotFound:                "ComponentNotFound",
	KindRelationshipNotFound:             "RelationshipNotFound",
	KindModelNotFound:                    "ModelNotFound",
	KindModelAlreadyExists:               "ModelAlreadyExists",
	KindModelReferencesNotDeleted:        "ModelReferencesNotDeleted",
	KindModelReferencesNotDecommissioned: "ModelReferencesNotDecommissioned",
	KindModelDecommissioned:              "ModelDecommissioned",
	KindModelVersionNotSupported:         "ModelVersionNotSupported",
	KindDTDLParserError:                  "DTDLParserError",
	KindRelationshipsNotDeleted:          "RelationshipsNotDeleted",
	KindTwinLimitReached:                 "TwinLimitReached",
	KindInvalidArgument:                  "InvalidArgument",
	KindMissingArgument:                  "MissingArgument",
	KindLimitExceeded:                    "LimitExceeded",
	KindInvalidRelationship:              "InvalidRelationship",
	KindOperationNotAllowed:              "OperationNotAllowed",
	KindJSONPatchInvalid:                 "JSONPatchInvalid",
	KindPreconditionFailed:               "PreconditionFailed",
	KindValidationFailed:                 "ValidationFailed",
	KindBadRequest:                       "BadRequest",
	KindEventRouteNotFound:               "EventRouteNotFound",
	KindEventRouteEndpointInvalid:        "EventRouteEndpointInvalid",
	KindEventRouteFilterInvalid:          "EventRouteFilterInvalid",
	KindEventRouteIDInvalid:              "EventRouteIDInvalid",
	KindEndpointNotFound:                 "EndpointNotFound",
	KindEndpointInUse:                    "EndpointInUse",
	KindEndpointValidationFailed:         "EndpointValidationFailed",
	KindDeadLetterNotFound:               "DeadLetterNotFound",
	KindImportJobNotFound:                "ImportJobNotFound",
	KindDeleteJobNotFound:                "DeleteJobNotFound",
	KindJobLimitReached:                  "JobLimitReached",
	KindSourceNotFound:                   "SourceNotFound",
	KindSourceInUse:                      "SourceInUse",
	KindSourceNotRunning:                 "SourceNotRunning",
	KindMappingNotFound:                  "MappingNotFound",
	KindDetectorNotFound:                 "DetectorNotFound",
	KindKeyNotFound:                      "KeyNotFound",
	KindQueryInvalid:                     "QueryInvalid",
	KindTimeout:                          "Timeout",
	KindQuotaReached:                     "QuotaReached",
	KindTooManyRequests:                  "TooManyRequests",
	KindAPIVersionMissing:                "APIVersionMissing",
	KindAPIVersionUnsupported:            "APIVersionUnsupported",
	KindMediaTypeUnsupported:             "MediaTypeUnsupported",
	KindRequestTimeout:                   "RequestTimeout",
	KindHeaderTooLarge:                   "HeaderTooLarge",
	KindHostNotAllowed:                   "HostNotAllowed",
	KindUnauthorized:                     "Unauthorized",
	KindForbidden:                        "Forbidden",
	KindMethodNotAllowed:                 "MethodNotAllowed",
	KindPathNotFound:                     "PathNotFound",
	KindInternal:                         "Internal",
	KindInsufficientStorage:              "InsufficientStorage",
	KindServiceUnavailable:               "ServiceUnavailable",
}

// Kinds returns every Kind, in declaration order.
func Kinds() []Kind {
	ks := make([]Kind, 0, kindEnd-1)
	for k := Kind(1); k < kindEnd; k++ {
		ks = append(ks, k)
	}
	return ks
}

// String returns the kind's Go name without the Kind prefix, such as "TwinNotFound", or
// "Kind(n)" for a value that names no kind.
func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// patchHelp ends every JsonPatchInvalid message, as ADT's do.
const patchHelp = " Please provide a valid patch document. See section on update apis in the documentation http://aka.ms/adtv2twins."

// Error is an ADT-shaped failure: its kind, a message for the client and optional details
// (each itself an Error of its own kind, without details of its own). The API layer finds it
// with errors.As and renders it as {"error":{"code","message","details"}}, with the HTTP
// status and ADT code of each kind.
type Error struct {
	Kind    Kind
	Message string
	Details []Error
}

// Error returns the kind and the message.
func (e *Error) Error() string {
	return e.Kind.String() + ": " + e.Message
}

// newError builds an Error without details.
func newError(kind Kind, msg string) *Error {
	return &Error{Kind: kind, Message: msg}
}

// TwinNotFound is a KindTwinNotFound error with ADT's message.
func TwinNotFound(id string) *Error {
	return newError(KindTwinNotFound, fmt.Sprintf(
		"There is no digital twin instance that exists with the ID %s. Please verify that the twin id is valid and ensure that the twin is not deleted. See section on querying the twins https://aka.ms/adtv2query.", id))
}

// TargetTwinNotFound is a KindTargetTwinNotFound error: a relationship's $targetId names no
// twin.
func TargetTwinNotFound(id string) *Error {
	return newError(KindTargetTwinNotFound, fmt.Sprintf(
		"There is no digital twin instance that exists with the ID %s to be the target of the relationship. Please verify that the target twin id is valid. See section on querying the twins https://aka.ms/adtv2query.", id))
}

// ComponentNotFound is a KindComponentNotFound error: the twin's model declares no such
// component, or the twin does not hold it.
func ComponentNotFound(twinID, component string) *Error {
	return newError(KindComponentNotFound, fmt.Sprintf(
		"There is no component %s on the digital twin %s. Please verify that the component name is valid and declared by the twin's model. See section on components https://aka.ms/adtv2twins.", component, twinID))
}

// RelationshipNotFound is a KindRelationshipNotFound error.
func RelationshipNotFound(sourceID, id string) *Error {
	return newError(KindRelationshipNotFound, fmt.Sprintf(
		"There is no relationship with the ID %s on the digital twin %s. Please verify that the relationship id is valid and ensure that the relationship is not deleted. See section on retrieving relationships https://aka.ms/adtv2twins.", id, sourceID))
}

// ModelNotFound is a KindModelNotFound error with ADT's message.
func ModelNotFound(id string) *Error {
	return newError(KindModelNotFound, fmt.Sprintf(
		"There is no Model(s) available that matches the provided id(s) %s. Check that the Model ID provided is valid by doing a Model_List API call.", id))
}

// InvalidModelID is a KindInvalidArgument error with ADT's message for a model id that is
// not a DTMI (recorded from ADT at api-version 2023-06-30).
func InvalidModelID(id string) *Error {
	return newError(KindInvalidArgument, fmt.Sprintf(
		"The format of the Model ID %s provided is not supported. See model documentation(https://aka.ms/ADTv2Models) for supported format.", id))
}

// ModelAlreadyExists is a KindModelAlreadyExists error with ADT's message.
func ModelAlreadyExists(id string) *Error {
	return newError(KindModelAlreadyExists, fmt.Sprintf(
		"Could not add model %s as it already exists. Use Model_List API to view models that already exist. See the Swagger example.(http://aka.ms/ModelListSwSmpl)", id))
}

// ModelReferencesNotDeleted is a KindModelReferencesNotDeleted error: the models referrers
// refer to the model being deleted. The message is ADT's, recorded by the JavaScript SDK's
// tests at api-version 2020-10-31, doubled full stop included.
func ModelReferencesNotDeleted(referrers []string) *Error {
	return newError(KindModelReferencesNotDeleted, fmt.Sprintf(
		"This model is currently being referenced by %s. You must delete these references before deleting the Model.. To delete references, do Delete Model on Ids provided above.", strings.Join(referrers, ", ")))
}

// ModelReferencesNotDecommissioned is a KindModelReferencesNotDecommissioned error: the
// models referrers, which are not decommissioned, refer to the model being decommissioned.
// The message follows ADT's for ModelReferencesNotDeleted.
func ModelReferencesNotDecommissioned(referrers []string) *Error {
	return newError(KindModelReferencesNotDecommissioned, fmt.Sprintf(
		"This model is currently being referenced by models that are not decommissioned: %s. You must decommission these references before decommissioning the Model. To decommission references, do Decommission Model on Ids provided above.", strings.Join(referrers, ", ")))
}

// ModelDecommissioned is a KindModelDecommissioned error: a new twin document names a
// decommissioned model.
func ModelDecommissioned(id string) *Error {
	return newError(KindModelDecommissioned, fmt.Sprintf(
		"The model %s is decommissioned. Decommissioned models cannot be used to create twins.", id))
}

// ModelVersionNotSupported is a KindModelVersionNotSupported error: a model's @context names
// no DTDL version twinflow understands.
func ModelVersionNotSupported(msg string) *Error {
	return newError(KindModelVersionNotSupported, msg)
}

// DTDLParserError is a KindDTDLParserError error: a batch of models does not parse or
// resolve.
func DTDLParserError(msg string) *Error {
	return newError(KindDTDLParserError, msg)
}

// RelationshipsNotDeleted is a KindRelationshipsNotDeleted error with ADT's message.
func RelationshipsNotDeleted(id string) *Error {
	return newError(KindRelationshipsNotDeleted, fmt.Sprintf(
		"Twin %s has active relationships. Cannot delete a twin unless all the relationships are deleted. Please ensure that the active relationships on the twin are deleted. See section on retrieving relationships https://aka.ms/adtv2twins.", id))
}

// TwinLimitReached is a KindTwinLimitReached error: the instance holds as many twins as it
// may.
func TwinLimitReached(limit int) *Error {
	return newError(KindTwinLimitReached, fmt.Sprintf(
		"The instance has reached its limit of %d twins. Delete twins before creating more.", limit))
}

// InvalidArgument is a KindInvalidArgument error.
func InvalidArgument(msg string) *Error {
	return newError(KindInvalidArgument, msg)
}

// MissingArgument is a KindMissingArgument error.
func MissingArgument(msg string) *Error {
	return newError(KindMissingArgument, msg)
}

// LimitExceeded is a KindLimitExceeded error.
func LimitExceeded(msg string) *Error {
	return newError(KindLimitExceeded, msg)
}

// InvalidRelationship is a KindInvalidRelationship error.
func InvalidRelationship(msg string) *Error {
	return newError(KindInvalidRelationship, msg)
}

// OperationNotAllowed is a KindOperationNotAllowed error.
func OperationNotAllowed(msg string) *Error {
	return newError(KindOperationNotAllowed, msg)
}

// JSONPatchInvalid is a KindJSONPatchInvalid error. reason is the first sentence; ADT's advice
// to provide a valid patch document is appended.
func JSONPatchInvalid(reason string) *Error {
	return newError(KindJSONPatchInvalid, reason+patchHelp)
}

// PreconditionFailed is a KindPreconditionFailed error.
func PreconditionFailed(msg string) *Error {
	return newError(KindPreconditionFailed, msg)
}

// ValidationFailed is a KindValidationFailed error with msg (ADT says "Invalid twin
// specified") and one KindValidationFailed detail per entry of details.
func ValidationFailed(msg string, details ...string) *Error {
	e := newError(KindValidationFailed, msg)
	for _, d := range details {
		e.Details = append(e.Details, Error{Kind: KindValidationFailed, Message: d})
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
