"""The official Azure Digital Twins Python SDK (azure-digitaltwins-core) against twinflow.

TWINFLOW_URL names the server, served over HTTPS with the certificate in TWINFLOW_CA (the SDK
sends bearer tokens over HTTPS only). TWINFLOW_TOKEN holds a Data Owner's access token and
TWINFLOW_READER_TOKEN a Data Reader's, of the OpenID Connect issuer the server trusts.
sdk_test.go in this directory sets them up and runs this file; it exits non-zero on the first
failed check.
"""

import os
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.digitaltwins.core import DigitalTwinsClient


class StaticToken:
    """A TokenCredential that hands out one access token, as Entra ID's would."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


URL = os.environ["TWINFLOW_URL"]
CA = os.environ["TWINFLOW_CA"]


def client(token):
    return DigitalTwinsClient(URL, StaticToken(token), connection_verify=CA)


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def fails_with(call, status, code, what):
    try:
        call()
    except HttpResponseError as e:
        got = e.error.code if e.error else None
        check(e.status_code == status and got == code, f"{what}: {e.status_code} {got}, want {status} {code}")
        return
    check(False, f"{what}: no error, want {status} {code}")


owner = client(os.environ["TWINFLOW_TOKEN"])
reader = client(os.environ["TWINFLOW_READER_TOKEN"])

ROOM = "dtmi:twinflow:pysdk:Room;1"
models = owner.create_models([{
    "@id": ROOM, "@type": "Interface", "@context": "dtmi:dtdl:context;3",
    "contents": [
        {"@type": "Property", "name": "temperature", "schema": "double", "writable": True},
        {"@type": "Telemetry", "name": "reading", "schema": "double"},
        {"@type": "Relationship", "name": "next", "target": ROOM},
    ],
}])
check(len(models) == 1 and models[0].id == ROOM, "create_models")
listed = [m.id for m in reader.list_models(include_model_definition=True)]
check(ROOM in listed, "a Data Reader lists the models")

room = {"$metadata": {"$model": ROOM}, "temperature": 20.5}
got = owner.upsert_digital_twin("room-1", room)
check(got["$dtId"] == "room-1" and got["temperature"] == 20.5 and got["$etag"], "upsert_digital_twin")
owner.upsert_digital_twin("room-2", room)
owner.update_digital_twin("room-1", [{"op": "replace", "path": "/temperature", "value": 22.0}])
check(reader.get_digital_twin("room-1")["temperature"] == 22.0, "update_digital_twin, read by a Data Reader")

rel = owner.upsert_relationship("room-1", "r1", {"$relationshipId": "r1", "$sourceId": "room-1",
                                                 "$relationshipName": "next", "$targetId": "room-2"})
check(rel["$targetId"] == "room-2", "upsert_relationship")
check([r["$relationshipId"] for r in reader.list_relationships("room-1")] == ["r1"], "list_relationships")
check([r.source_id for r in reader.list_incoming_relationships("room-2")] == ["room-1"], "list_incoming_relationships")

rows = list(reader.query_twins("SELECT T FROM DIGITALTWINS T WHERE T.temperature > 21"))
check([r["T"]["$dtId"] for r in rows] == ["room-1"], "query_twins")
rows = list(reader.query_twins("SELECT COUNT() FROM DIGITALTWINS"))
check(rows == [{"COUNT": 2}], "query_twins COUNT()")

owner.publish_telemetry("room-1", {"reading": 21.5}, message_id="py-msg-1")
print("ok: publish_telemetry")

# A Data Reader may read but not write; no token, or a token the issuer did not sign, gets 401.
fails_with(lambda: reader.upsert_digital_twin("room-3", room), 403, "Forbidden", "a Data Reader's write")
fails_with(lambda: reader.delete_digital_twin("room-2"), 403, "Forbidden", "a Data Reader's delete")
try:
    client("not-a-token").get_digital_twin("room-1")
    check(False, "a forged token was accepted")
except ClientAuthenticationError as e:
    check(e.status_code == 401, f"a forged token: {e.status_code}, want 401")

owner.delete_relationship("room-1", "r1")
owner.delete_digital_twin("room-1")
owner.delete_digital_twin("room-2")
try:
    reader.get_digital_twin("room-1")
    check(False, "a deleted twin is still there")
except ResourceNotFoundError as e:
    check(e.error.code == "DigitalTwinNotFound", "get of a deleted twin: DigitalTwinNotFound")
owner.delete_model(ROOM)
check(ROOM not in [m.id for m in reader.list_models()], "delete_model")
print("PASS")
