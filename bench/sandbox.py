"""How fast the HubSpot sandbox answers a list endpoint with 100-record pages.

    .venv/bin/python bench/sandbox.py [--contacts 200000] [--seconds 10] [--clients 1]

A client in another process pages through ``GET /crm/v3/objects/contacts?limit=100`` with
ten properties over one keep-alive connection (http.client, so the client's own cost stays small). Rate limits stay on (professional tier) with
the clock scaled 100 times, so the limits are enforced without being what is measured. The last
line is ``requests/s: X``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox import Sandbox  # noqa: E402

PROPERTIES = "email,firstname,lastname,jobtitle,company,industry,lifecyclestage,hubspot_owner_id,lastmodifieddate,hs_email_optout"

CLIENT = r"""
import http.client, json, sys, time, urllib.parse
base, token, seconds, start_after, properties = sys.argv[1:6]
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
connection = http.client.HTTPConnection(host, port)  # one keep-alive connection, as a sync client holds
headers = {"Authorization": "Bearer " + token}
after, pages, records, throttled = start_after, 0, 0, 0
deadline = time.perf_counter() + float(seconds)
begun = time.perf_counter()
while time.perf_counter() < deadline:
    connection.request("GET", f"/crm/v3/objects/contacts?limit=100&properties={properties}&after={after}", headers=headers)
    answer = connection.getresponse()
    body = json.loads(answer.read())
    if answer.status == 429:
        throttled += 1
        continue
    assert answer.status == 200, body
    pages += 1
    records += len(body["results"])
    after = body["paging"]["next"]["after"] if "paging" in body else start_after
print(json.dumps({"pages": pages, "records": records, "throttled": throttled, "elapsed": time.perf_counter() - begun}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes reading at once")
    args = parser.parse_args()
    with Sandbox.start("hubspot", args.contacts, seed=1, tier="professional", time_scale=100.0) as sb:
        token = sb.credentials["access_token"]
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, sb.base_url, token, str(args.seconds),
                                     str(1 + n * args.contacts // args.clients), PROPERTIES],
                                    stdout=subprocess.PIPE, text=True) for n in range(args.clients)]
        reports = [json.loads(client.communicate()[0]) for client in clients]
        statuses = sb.stats.by_route().get("contacts.list", {})
    pages = sum(r["pages"] for r in reports)
    elapsed = max(r["elapsed"] for r in reports)
    print(f"tenant: {args.contacts} contacts; clients: {args.clients}; pages of 100 read: {pages} "
          f"({sum(r['records'] for r in reports)} records) in {elapsed:.1f} s; statuses: {statuses}")
    print(f"requests/s: {pages / elapsed:.0f}")


if __name__ == "__main__":
    main()
