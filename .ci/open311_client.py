"""Drive unmodified third-party Open311 clients against a running Linli (see .ci/open311-client).

Glue (standard library only): sign in as the demo committee, create an API token limited to its
community with report_create, and later publish the posted report (moderation), as staff do.
Clients (imported as installed from PyPI): `civicbot` (POST and reads) and `georeport` (reads).
"""

import json
import os
import sys
import urllib.request

BASE = os.environ["LINLI_BASE"]
ENDPOINT = BASE + "/open311/v2"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok   " + msg)


class Staff:
    """The demo committee worker, through Linli's own REST API."""

    def __init__(self, login):
        body = json.dumps({"login": login, "password": "linli-demo"}).encode()
        req = urllib.request.Request(
            BASE + "/api/v1/auth/login", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req) as r:
            self.cookie = r.headers["set-cookie"].split(";")[0]
            self.csrf = json.load(r)["csrf_token"]

    def call(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(BASE + path, data, method=method)
        req.add_header("cookie", self.cookie)
        req.add_header("x-csrf-token", self.csrf)
        if data is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.load(r)


staff = Staff("committee")
community = staff.call("GET", "/api/v1/places")[0]
check(community["kind"] == "community", "the committee's area is a community")
token = staff.call(
    "POST",
    "/api/v1/auth/tokens",
    {"name": "open311 client", "actions": ["report_create"], "place_id": community["id"], "expires_in_days": 1},
)["token"]

# --- civicbot (Python 3): list services, definition, POST ----------------------------------
from civicbot.open311 import CONFIRM_TOKEN, Open311Client  # noqa: E402
from civicbot.registry import Endpoint  # noqa: E402

endpoint = Endpoint(id="linli-ci", name="Linli CI", base_url=ENDPOINT, write=True)
client = Open311Client(endpoint)
codes = [s["service_code"] for s in client.list_services()]
check("repair_elevator" in codes and len(codes) >= 10, "civicbot: services listed (%d)" % len(codes))
definition = client.get_service_definition("repair_elevator")
attrs = [a["code"] for a in definition["attributes"]]
check("public" in attrs, "civicbot: service definition has attributes %s" % attrs)
sent = client.create_request(
    "repair_elevator",
    dry_run=False,
    confirm=CONFIRM_TOKEN,
    api_key=token,
    validate_remote=True,
    lat=30.5801,
    lng=114.2734,
    description="3号楼电梯停在二楼，门打不开 (posted by civicbot)",
    attributes={"public": "yes", "title": "电梯困人隐患"},
    first_name="小明",
    last_name="王",
    email="wang.xm@example.org",
    phone="13800001234",
    account_id="ci-account",
)
created = sent.response
rid = created[0]["service_request_id"]
check(isinstance(rid, str) and len(rid) > 10, "civicbot: posted, service_request_id %s" % rid)

# Staff see it placed by its point, with the contact masked.
report = staff.call("GET", "/api/v1/reports/%s" % rid)
check(report["report"]["place_id"] == community["id"], "the point was placed in the committee's community")
check(report["contact"]["phone"] == "138****1234", "staff see the phone masked")
check(report["contact"]["email"] == "w***@example.org", "staff see the e-mail masked")

# --- staff publish it (moderation), as Linli requires before anonymous readers see it ----------
staff.call("POST", "/api/v1/reports/%s/actions" % rid, {"action": "accept", "public_note": "已受理"})
staff.call("POST", "/api/v1/reports/%s/actions" % rid, {"action": "moderate", "public": True})

# --- civicbot reads it back ---------------------------------------------------------------------
read = client.get_request(rid)
check(read["service_request_id"] == rid and read["status"] == "open", "civicbot: read back by id")
check(read["service_code"] == "repair_elevator", "civicbot: same service_code")
check("posted by civicbot" in read["description"], "civicbot: same description")
check(abs(float(read["lat"]) - 30.5801) < 1e-6, "civicbot: same location")
check(read["status_notes"] == "已受理", "civicbot: public note")
text = json.dumps(read, ensure_ascii=False)
check("1234" not in text and "wang.xm" not in text, "civicbot: no contact fields in the public answer")
listed = client.list_requests(service_request_ids=[rid])
check([r["service_request_id"] for r in listed] == [rid], "civicbot: found by service_request_id")
check(client.get_token(rid)[0]["service_request_id"] == rid, "civicbot: token resolves to the request")

# --- georeport (Python 3): services, definition, read back --------------------------------------
from georeport import GeoReport  # noqa: E402

for fmt in ("json", "xml"):
    g = GeoReport(ENDPOINT, output_format=fmt)
    services = g.get_service_list()
    gcodes = [s["service_code"] for s in services]
    check("repair_elevator" in gcodes, "georeport/%s: services listed (%d)" % (fmt, len(gcodes)))
    d = g.get_service_definition("repair_elevator")
    check("attributes" in d, "georeport/%s: service definition" % fmt)
    r = g.get_service_request(rid)
    check(r["service_request_id"] == rid, "georeport/%s: request read back by id" % fmt)
    check(r["status"] == "open", "georeport/%s: status open" % fmt)
    check(r["status_notes"] == "已受理", "georeport/%s: public note" % fmt)
    rs = g.get_service_requests(service_code="repair_elevator", status="open")
    if isinstance(rs, dict):  # xmltodict gives a dict for a single element
        rs = [rs]
    check(any(x["service_request_id"] == rid for x in rs), "georeport/%s: found in the list" % fmt)

print("open311 client interoperability: passed")
