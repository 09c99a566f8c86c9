// Drives a running twinflow server with the official Azure Digital Twins JavaScript SDK
// (@azure/digital-twins-core 1.1.0) through every model, twin, component, relationship,
// query and telemetry call it has, and checks results and error codes against ADT's
// behaviour.
//
// The server's https URL comes from TWINFLOW_URL; its certificate must be trusted through
// NODE_EXTRA_CA_CERTS. When the server requires authentication, TWINFLOW_TOKEN holds a Data
// Owner's access token and TWINFLOW_READER_TOKEN a Data Reader's. sdk_test.go in this
// directory sets them up and runs this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DigitalTwinsClient } from "@azure/digital-twins-core";

const url = process.env.TWINFLOW_URL;
if (!url) {
  throw new Error("TWINFLOW_URL is not set; run this through sdk_test.go");
}

/** A TokenCredential that hands out token. */
function credentialOf(token) {
  return { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600e3 }) };
}

// The Data Owner's token when the server requires one; else a dummy, which it ignores.
const token = process.env.TWINFLOW_TOKEN;
const client = new DigitalTwinsClient(url, credentialOf(token ?? "x"));

const thermostatId = "dtmi:twinflow:sdktest:Thermostat;1";
const floorId = "dtmi:twinflow:sdktest:Floor;1";
const buildingId = "dtmi:twinflow:sdktest:Building;1";

const thermostat = {
  "@id": thermostatId,
  "@type": "Interface",
  "@context": "dtmi:dtdl:context;2",
  displayName: "Thermostat",
  contents: [
    { "@type": "Property", name: "temperature", schema: "double", writable: true },
    { "@type": "Telemetry", name: "reading", schema: "double" },
  ],
};

const floor = {
  "@id": floorId,
  "@type": "Interface",
  "@context": "dtmi:dtdl:context;2",
  displayName: "Floor",
  contents: [{ "@type": "Property", name: "level", schema: "integer", writable: true }],
};

const building = {
  "@id": buildingId,
  "@type": "Interface",
  "@context": "dtmi:dtdl:context;2",
  displayName: "Building",
  contents: [
    { "@type": "Property", name: "name", schema: "string", writable: true },
    { "@type": "Property", name: "floors", schema: "integer", writable: true },
    { "@type": "Component", name: "climate", schema: thermostatId },
    { "@type": "Telemetry", name: "alarm", schema: "string" },
    {
      "@type": "Relationship",
      name: "has",
      target: floorId,
      properties: [{ "@type": "Property", name: "note", schema: "string", writable: true }],
    },
  ],
};

/**
 * Asserts that promise rejects with an ADT error of the given HTTP status and error code.
 */
async function rejectsWith(promise, status, code) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.statusCode, status, `status of ${err.message}`);
    assert.equal(err.code, code, `code of ${err.message}`);
    return true;
  });
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) {
    items.push(item);
  }
  return items;
}

test("a server that requires authentication refuses a bad token and a reader's writes", { skip: !token }, async () => {
  const stranger = new DigitalTwinsClient(url, credentialOf("not-a-token"));
  await rejectsWith(stranger.getModel(thermostatId), 401, "Unauthorized");

  const reader = new DigitalTwinsClient(url, credentialOf(process.env.TWINFLOW_READER_TOKEN));
  await collect(reader.listModels());
  await rejectsWith(reader.createModels([thermostat]), 403, "Forbidden");
});

// State shared between the steps below; node:test runs them in order.
let buildingEtag;

test("createModels uploads models and refuses duplicates", async () => {
  const created = await client.createModels([thermostat, floor, building]);
  assert.deepEqual(created.map((m) => m.id).sort(), [buildingId, floorId, thermostatId]);
  for (const m of created) {
    assert.equal(m.decommissioned, false);
    assert.ok(m.uploadTime instanceof Date && !Number.isNaN(m.uploadTime.getTime()));
  }
  await rejectsWith(client.createModels([floor]), 409, "ModelAlreadyExists");
});

test("getModel returns metadata and, on request, the definition", async () => {
  const bare = await client.getModel(buildingId);
  assert.equal(bare.id, buildingId);
  assert.equal(bare.model, undefined);
  assert.deepEqual(bare.displayName, { en: "Building" });

  const full = await client.getModel(buildingId, true);
  assert.equal(full.model["@id"], buildingId);
  assert.equal(full.model.contents.length, building.contents.length);

  await rejectsWith(client.getModel("dtmi:twinflow:sdktest:Missing;1"), 404, "ModelNotFound");
});

test("listModels lists every model and follows dependenciesFor", async () => {
  const all = await collect(client.listModels());
  const ids = all.map((m) => m.id);
  for (const id of [thermostatId, floorId, buildingId]) {
    assert.ok(ids.includes(id), `${id} in ${ids}`);
  }
  assert.ok(all.every((m) => m.model === undefined));

  const withDefs = await collect(client.listModels([floorId], true));
  assert.deepEqual(withDefs.map((m) => m.id), [floorId]);
  assert.equal(withDefs[0].model["@id"], floorId);
});

test("upsertDigitalTwin creates and replaces twins", async () => {
  const twin = {
    $metadata: { $model: buildingId },
    name: "HQ",
    floors: 3,
    climate: { $metadata: {}, temperature: 21.5 },
  };
  const created = await client.upsertDigitalTwin("building-1", JSON.stringify(twin));
  assert.equal(created.body.$dtId, "building-1");
  assert.equal(created.body.name, "HQ");
  assert.equal(created.body.climate.temperature, 21.5);
  assert.equal(created.body.$metadata.$model, buildingId);
  assert.match(created.etag, /^W\/"/);
  assert.equal(created.etag, created.body.$etag);

  const replaced = await client.upsertDigitalTwin("building-1", JSON.stringify({ ...twin, floors: 4 }));
  assert.equal(replaced.body.floors, 4);
  assert.notEqual(replaced.etag, created.etag);
  buildingEtag = replaced.etag;

  await rejectsWith(
    client.upsertDigitalTwin("building-1", JSON.stringify(twin), { ifNoneMatch: "*" }),
    412,
    "PreconditionFailed",
  );
  await rejectsWith(
    client.upsertDigitalTwin(
      "building-bad",
      JSON.stringify({ $metadata: { $model: "dtmi:twinflow:sdktest:Missing;1" } }),
    ),
    400,
    "ValidationFailed",
  );
  await rejectsWith(
    client.upsertDigitalTwin(
      "building-bad",
      JSON.stringify({ ...twin, floors: "three" }),
    ),
    400,
    "ValidationFailed",
  );

  for (const id of ["floor-1", "floor-2"]) {
    const f = await client.upsertDigitalTwin(
      id,
      JSON.stringify({ $metadata: { $model: floorId }, level: Number(id.slice(-1)) }),
      { ifNoneMatch: "*" },
    );
    assert.equal(f.body.$dtId, id);
  }
});

test("getDigitalTwin reads twins back and reports missing ones", async () => {
  const got = await client.getDigitalTwin("building-1");
  assert.equal(got.etag, buildingEtag);
  assert.equal(got.body.$etag, buildingEtag);
  assert.equal(got.body.floors, 4);
  assert.ok(got.body.$metadata.$lastUpdateTime, "twin $lastUpdateTime");
  assert.ok(got.body.$metadata.floors.lastUpdateTime, "property lastUpdateTime");

  await rejectsWith(client.getDigitalTwin("no-such-twin"), 404, "DigitalTwinNotFound");
});

test("queryTwins answers from the graph, page by page", async () => {
  const floors = await collect(
    client.queryTwins(`SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('${floorId}')`),
  );
  assert.deepEqual(floors.map((t) => t.$dtId).sort(), ["floor-1", "floor-2"]);

  const pages = [];
  for await (const page of client.queryTwins("SELECT * FROM DIGITALTWINS", 1).byPage()) {
    pages.push(page.value.length);
  }
  assert.deepEqual(pages, [1, 1, 1]);

  const [row] = await collect(client.queryTwins("SELECT COUNT() FROM DIGITALTWINS"));
  assert.equal(row.COUNT, 3);

  await rejectsWith(collect(client.queryTwins("FOO BAR")), 400, "SqlQueryError");
});

test("updateDigitalTwin patches with and without an etag", async () => {
  const patched = await client.updateDigitalTwin("building-1", [
    { op: "replace", path: "/name", value: "Head office" },
  ]);
  assert.match(patched.etag, /^W\/"/);
  assert.notEqual(patched.etag, buildingEtag);

  await rejectsWith(
    client.updateDigitalTwin("building-1", [{ op: "replace", path: "/floors", value: 9 }], {
      ifMatch: buildingEtag,
    }),
    412,
    "PreconditionFailed",
  );

  const matched = await client.updateDigitalTwin(
    "building-1",
    [{ op: "replace", path: "/floors", value: 5 }],
    { ifMatch: patched.etag },
  );
  buildingEtag = matched.etag;

  await rejectsWith(
    client.updateDigitalTwin("building-1", [{ op: "move", from: "/name", path: "/title" }]),
    400,
    "JsonPatchInvalid",
  );
  await rejectsWith(
    client.updateDigitalTwin("no-such-twin", [{ op: "add", path: "/name", value: "x" }]),
    404,
    "DigitalTwinNotFound",
  );

  const got = await client.getDigitalTwin("building-1");
  assert.equal(got.body.name, "Head office");
  assert.equal(got.body.floors, 5);
  assert.equal(got.etag, buildingEtag);
});

test("getComponent and updateComponent work on the component alone", async () => {
  const comp = await client.getComponent("building-1", "climate");
  assert.equal(comp.body.temperature, 21.5);
  assert.ok(comp.body.$metadata.temperature.lastUpdateTime);

  await client.updateComponent("building-1", "climate", [
    { op: "replace", path: "/temperature", value: 19 },
  ]);
  const after = await client.getComponent("building-1", "climate");
  assert.equal(after.body.temperature, 19);
  const twin = await client.getDigitalTwin("building-1");
  assert.equal(twin.body.climate.temperature, 19);
  buildingEtag = twin.etag;

  await rejectsWith(client.getComponent("building-1", "nope"), 404, "ComponentNotFound");
});

test("relationships: upsert, get, update, list, incoming, delete", async () => {
  const rel = {
    $relationshipId: "has-floor-1",
    $sourceId: "building-1",
    $targetId: "floor-1",
    $relationshipName: "has",
    note: "ground",
  };
  const created = await client.upsertRelationship("building-1", "has-floor-1", rel);
  assert.equal(created.body.$relationshipId, "has-floor-1");
  assert.equal(created.body.$sourceId, "building-1");
  assert.equal(created.body.$targetId, "floor-1");
  assert.equal(created.body.$relationshipName, "has");
  assert.equal(created.body.note, "ground");
  assert.equal(created.etag, created.body.$etag);

  await client.upsertRelationship("building-1", "has-floor-2", {
    $targetId: "floor-2",
    $relationshipName: "has",
  });
  await rejectsWith(
    client.upsertRelationship("building-1", "has-floor-1", rel, { ifNoneMatch: "*" }),
    412,
    "PreconditionFailed",
  );
  await rejectsWith(
    client.upsertRelationship("building-1", "has-ghost", {
      $targetId: "no-such-twin",
      $relationshipName: "has",
    }),
    404,
    "TargetTwinNotFound",
  );

  const got = await client.getRelationship("building-1", "has-floor-1");
  assert.equal(got.body.note, "ground");

  const updated = await client.updateRelationship(
    "building-1",
    "has-floor-1",
    [{ op: "replace", path: "/note", value: "lobby" }],
    { ifMatch: got.etag },
  );
  assert.notEqual(updated.etag, got.etag);
  await rejectsWith(
    client.updateRelationship("building-1", "has-floor-1", [{ op: "replace", path: "/note", value: "x" }], {
      ifMatch: got.etag,
    }),
    412,
    "PreconditionFailed",
  );
  assert.equal((await client.getRelationship("building-1", "has-floor-1")).body.note, "lobby");

  const out = await collect(client.listRelationships("building-1"));
  assert.deepEqual(out.map((r) => r.$relationshipId).sort(), ["has-floor-1", "has-floor-2"]);
  const named = await collect(client.listRelationships("building-1", "has"));
  assert.equal(named.length, 2);

  const incoming = await collect(client.listIncomingRelationships("floor-1"));
  assert.equal(incoming.length, 1);
  assert.equal(incoming[0].relationshipId, "has-floor-1");
  assert.equal(incoming[0].sourceId, "building-1");
  assert.equal(incoming[0].relationshipName, "has");

  await rejectsWith(client.deleteDigitalTwin("floor-2"), 400, "RelationshipsNotDeleted");

  await client.deleteRelationship("building-1", "has-floor-1");
  await client.deleteRelationship("building-1", "has-floor-2");
  await rejectsWith(client.getRelationship("building-1", "has-floor-1"), 404, "RelationshipNotFound");
  await rejectsWith(client.deleteRelationship("building-1", "has-floor-1"), 404, "RelationshipNotFound");
  assert.deepEqual(await collect(client.listRelationships("building-1")), []);
});

test("publishTelemetry and publishComponentTelemetry are accepted", async () => {
  await client.publishTelemetry("building-1", { alarm: "smoke" }, "msg-1");
  // SDK 1.1.0 hands publishComponentTelemetry's payload to the generated client as the message
  // id and the message id as the body, so a caller of this version passes them swapped.
  await client.publishComponentTelemetry("building-1", "climate", "msg-2", { reading: 20.25 });
  await rejectsWith(
    client.publishComponentTelemetry("building-1", "nope", "msg-4", { reading: 1 }),
    404,
    "ComponentNotFound",
  );
  await rejectsWith(client.publishTelemetry("no-such-twin", { alarm: "x" }, "msg-3"), 404, "DigitalTwinNotFound");
});

test("deleteDigitalTwin honours If-Match and removes the twin", async () => {
  await rejectsWith(
    client.deleteDigitalTwin("building-1", { ifMatch: 'W/"00000000-0000-0000-0000-000000000000"' }),
    412,
    "PreconditionFailed",
  );
  await client.deleteDigitalTwin("building-1", { ifMatch: buildingEtag });
  await rejectsWith(client.getDigitalTwin("building-1"), 404, "DigitalTwinNotFound");
  await rejectsWith(client.deleteDigitalTwin("building-1"), 404, "DigitalTwinNotFound");
  await client.deleteDigitalTwin("floor-1");
  await client.deleteDigitalTwin("floor-2");
});

test("decomissionModel and deleteModel retire models", async () => {
  await client.decomissionModel(floorId);
  assert.equal((await client.getModel(floorId)).decommissioned, true);
  await rejectsWith(
    client.upsertDigitalTwin("floor-9", JSON.stringify({ $metadata: { $model: floorId } })),
    400,
    "ModelDecommissioned",
  );

  await rejectsWith(client.deleteModel(floorId), 409, "ModelReferencesNotDeleted");
  await client.deleteModel(buildingId);
  await client.deleteModel(floorId);
  await client.deleteModel(thermostatId);
  await rejectsWith(client.getModel(buildingId), 404, "ModelNotFound");
  await rejectsWith(client.deleteModel(buildingId), 404, "ModelNotFound");
});
