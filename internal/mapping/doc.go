// Package mapping turns messages into twin changes by declarative rules written in CEL
// (cel.dev/cel-go): the mappings of twinflow's ingress. A Definition names a source, the
// target twin ids, the patch to apply and the telemetry to send; Compile checks it and returns
// a Mapping, which implements ingress.Mapper. Mapping.DryRun shows what a message would change
// without changing anything.
//
// # What the expressions see
//
//   - message.body: the body parsed as JSON when it is JSON, else the body as a string. JSON
//     objects are maps with string keys, arrays are lists, and every JSON number is a double,
//     as in CEL's own mapping of JSON, so that a rule behaves the same whether a device sends
//     21 or 21.5. CEL does not mix int and double in arithmetic: write
//     message.body.temp * 1.8 + 32.0, or int(message.body.count) + 1. Integers beyond 2^53
//     lose precision, as they do in most JSON readers.
//   - message.topic: where the message arrived (MQTT topic, NATS subject, Kafka topic, AMQP
//     address or routing key, the HTTP source's name); message.key: the Kafka record key,
//     else ""; message.headers: a map of strings; message.time: a timestamp, when the message
//     was produced if the broker tells, else when it was received. For mappings of
//     twinflow's change events ($events) see EventMessage.
//   - twin: the target twin's current document ($dtId, $etag, $metadata and the properties),
//     or null when it does not exist yet. Only condition, patch and telemetry see it: the
//     target must be known first.
//   - twinById(id): twin id's document, or null when there is none. It reads, like twin, the
//     state the message's changes would apply to.
//   - incoming(id, name) and outgoing(id, name): the ids of the twins with a relationship
//     named name to twin id, and of those twin id has one named name to (see Graph).
//   - CEL's standard library, optional values (message.body.?humidity) and the string
//     extensions (split, substring, replace, lowerAscii, format, ...; cel-go's ext.Strings).
//
// An IoT Hub-style topic devices/{deviceId}/messages/events/ gives its device's twin by
// twinId: message.topic.split("/")[1].
//
// # Order of evaluation
//
// For each message: the condition, when it does not refer to twin, once; when it is false
// the message changes nothing. Then twinId (one string) or twinIds (a list of strings,
// duplicates dropped; an empty list changes nothing). Then for each target twin, in order:
// its document is read; a condition that refers to twin is evaluated now, for this twin,
// and a false one skips the twin; a missing twin is an error unless the mapping has
// createTwin; then each patch entry, in the order of their paths, and the telemetry. So a
// condition that rejects messages of the wrong shape guards twinId as well, unless it needs
// twin; such a condition then must be written so that twinId does not fail on those
// messages.
//
// # What the results become
//
// A patch entry's value is converted to JSON exactly: ints and uints as integers, doubles in
// their shortest form (21.0 is 21), timestamps as RFC 3339 strings in UTC, lists and maps with
// string keys as arrays and objects; bytes, durations, NaN and infinities are refused.
// A null value removes the property when the twin has it (and writes nothing otherwise), and
// optional.none() writes nothing, so message.body.?humidity copies the field only when the
// message has it. Values are written with add-or-replace semantics: a path whose parents do
// not exist yet creates them (the patch adds the first missing object whole), so a property
// need not be initialised first.
// Telemetry must give an object (null or optional.none() sends none).
//
// A message's changes are one ingress.Change per target twin that the message changes:
// its patch, its telemetry, and the model to create it with when it is missing and the
// mapping has createTwin. The twin service validates the patch against the twin's model
// when it applies it; a value the model refuses fails there.
//
// # Cost
//
// CEL's cost tracking bounds the work of one message (Config.CostLimit, for all its
// expressions and target twins together; reading a twin or asking the graph counts too): a
// message over it fails with ErrCostLimit, naming the expression, and becomes a dead letter.
// The default limit stops a runaway rule within about a tenth of a second (BenchmarkRunaway).
// Compile also estimates each expression's cost for inputs of Config.EstimateSize and refuses
// one over the limit, so a rule whose cost grows much faster than its input (a loop over the
// message nested in another) is refused when it is defined rather than failing message after
// message.
package mapping
