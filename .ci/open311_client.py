"""Drive unmodified third-party Open311 clients against a running Linli (see .ci/open311-client).

Glue (standard library only): sign in as the demo committee, create an API token limited to its
community with report_create, and later publish the posted report (moderation), as staff do.
Clients: `georeport` (imported here, Python 3) and `three` (run under Python 2.7).
"""

import json
import os
import subprocess
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

# --- three (Python 2.7): list services, POST, read back by id and by token --------------------
THREE = r"""
import json, sys
from three import Three
endpoint, key = sys.argv[1], sys.argv[2]
t = Three(endpoint, api_key=key)
out = {}
out['services'] = t.services()
out['definition'] = t.services('repair_elevator')
created = t.post('repair_elevator', lat='30.5801', long='114.2734',
                 description='3号楼电梯停在二楼，门打不开 (posted by three)',
                 **{'attribute[public]': 'yes', 'attribute[title]': '电梯困人隐患'})
out['created'] = created
out['status_code'] = t.post_response.status_code
rid = created[0]['service_request_id']
out['read'] = t.request(rid, api_key=key)
out['token'] = t.token(rid)
t.configure(format='xml')
out['read_xml'] = t.request(rid, api_key=key)
print(json.dumps(out))
"""
env = dict(os.environ, PYTHONPATH=os.environ["PY2PATH"])
proc = subprocess.run(
    [os.environ["PY2"], "-c", THREE, ENDPOINT, token], capture_output=True, text=True, env=env
)
if proc.returncode != 0:
    fail("three failed: " + proc.stderr)
out = json.loads(proc.stdout)
codes = [s["service_code"] for s in out["services"]]
check("repair_elevator" in codes and len(codes) >= 10, "three: services listed (%d)" % len(codes))
attrs = [a["code"] for a in out["definition"]["attributes"]]
check("public" in attrs, "three: service definition has attributes %s" % attrs)
check(out["status_code"] == 200, "three: POST requests.json answered 200")
rid = out["created"][0]["service_request_id"]
check(isinstance(rid, str) and len(rid) > 10, "three: posted, service_request_id %s" % rid)
read = out["read"][0]
check(read["service_request_id"] == rid and read["status"] == "open", "three: read back by id")
check(read["service_code"] == "repair_elevator", "three: same service_code")
check("posted by three" in read["description"], "three: same description")
check(abs(float(read["lat"]) - 30.5801) < 1e-6, "three: same location")
check(out["token"][0]["service_request_id"] == rid, "three: token resolves to the request")
xml_req = out["read_xml"]
check(json.dumps(xml_req).find(rid) >= 0, "three: read back in XML")

# --- staff publish it (moderation), as Linli requires before anonymous readers see it ----------
staff.call("POST", "/api/v1/reports/%s/actions" % rid, {"action": "accept", "public_note": "已受理"})
staff.call("POST", "/api/v1/reports/%s/actions" % rid, {"action": "moderate", "public": True})

# --- georeport (Python 3, maintained): services, definition, read back -------------------------
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
