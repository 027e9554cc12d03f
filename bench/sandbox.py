"""How fast the HubSpot sandbox answers a list endpoint with 100-record pages.

    .venv/bin/python bench/sandbox.py [--contacts 200000] [--seconds 10] [--clients 1]
        [--object contacts|calls|emails|meetings|notes|tasks] [--activities-per-contact 10]
    .venv/bin/python bench/sandbox.py --all-engagements --contacts 100000 --activities-per-contact 10

A client in another process pages through ``GET /crm/v3/objects/contacts?limit=100`` with
ten properties (or an engagement object with ``associations=contacts``) over one keep-alive
connection (http.client, so the client's own cost stays small), starting again at the end.
``--all-engagements`` instead reads every page of the five engagement objects once, as a full
sync does, and reports the sandbox's memory along the way. Rate limits stay on (professional
tier) with the clock scaled 100 times, so the limits are enforced without being what is
measured. The last line is ``requests/s: X``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading

import psutil

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.synth import ACTIVITY_SLOTS

PROPERTIES = (
    "email,firstname,lastname,jobtitle,company,industry,lifecyclestage,hubspot_owner_id,lastmodifieddate,hs_email_optout"
)
ENGAGEMENTS = ("calls", "emails", "meetings", "notes", "tasks")

CLIENT = r"""
import http.client, json, sys, time, urllib.parse
base, token, start_after = sys.argv[1], sys.argv[2], sys.argv[4]
seconds, once = float(sys.argv[3]), sys.argv[5] == "once"
paths = sys.argv[6:]
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
connection = http.client.HTTPConnection(host, port)  # one keep-alive connection, as a sync client holds
headers = {"Authorization": "Bearer " + token}
pages, records, throttled = 0, 0, 0
deadline = time.perf_counter() + seconds
begun = time.perf_counter()
for path in paths:
    after = start_after
    while time.perf_counter() < deadline:
        connection.request("GET", f"{path}&after={after}", headers=headers)
        answer = connection.getresponse()
        body = json.loads(answer.read())
        if answer.status == 429:
            throttled += 1
            continue
        assert answer.status == 200, body
        pages += 1
        records += len(body["results"])
        if "paging" in body:
            after = body["paging"]["next"]["after"]
        elif once:
            break
        else:
            after = start_after
print(json.dumps({"pages": pages, "records": records, "throttled": throttled, "elapsed": time.perf_counter() - begun}))
"""


def path_of(object_type: str) -> str:
    if object_type == "contacts":
        return f"/crm/v3/objects/contacts?limit=100&properties={PROPERTIES}"
    return f"/crm/v3/objects/{object_type}?limit=100&associations=contacts"


def first_after(object_type: str, contacts: int, client: int, clients: int) -> str:
    """Where client ``client`` starts: its share of the tenant, as contact or engagement ids."""
    index = client * contacts // clients
    return str(index + 1 if object_type == "contacts" else index * ACTIVITY_SLOTS + 1)


class MemoryWatch:
    """The largest resident set of this process (the sandbox's) while the clients read."""

    def __init__(self):
        self.start = self.most = psutil.Process().memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            self.most = max(self.most, psutil.Process().memory_info().rss)

    def stop(self) -> str:
        self._done.set()
        self._thread.join()
        end = psutil.Process().memory_info().rss
        mib = 2**20
        return f"sandbox RSS: start {self.start / mib:.0f} MiB, peak {self.most / mib:.0f} MiB, end {end / mib:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes reading at once")
    parser.add_argument("--object", default="contacts", choices=("contacts", *ENGAGEMENTS))
    parser.add_argument("--activities-per-contact", type=float, default=None, help="mean; default the natural mix")
    parser.add_argument("--all-engagements", action="store_true", help="read every engagement page once")
    args = parser.parse_args()
    objects = ENGAGEMENTS if args.all_engagements else (args.object,)
    seconds = 3600.0 if args.all_engagements else args.seconds
    with Sandbox.start("hubspot", args.contacts, seed=1, tier="professional", time_scale=100.0,
                       activities_per_contact=args.activities_per_contact) as sb:
        memory = MemoryWatch()
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, sb.base_url, sb.credentials["access_token"],
                                     str(seconds), first_after(objects[0], args.contacts, n, args.clients),
                                     "once" if args.all_engagements else "loop", *map(path_of, objects)],
                                    stdout=subprocess.PIPE, text=True) for n in range(args.clients)]
        reports = [json.loads(client.communicate()[0]) for client in clients]
        statuses = {route: by for route, by in sb.stats.by_route().items() if route.endswith(".list")}
        print(memory.stop())
    pages = sum(r["pages"] for r in reports)
    elapsed = max(r["elapsed"] for r in reports)
    density = "natural" if args.activities_per_contact is None else args.activities_per_contact
    print(f"tenant: {args.contacts} contacts, activities per contact: {density}; "
          f"clients: {args.clients}; pages of 100 read: {pages} ({sum(r['records'] for r in reports)} records) "
          f"in {elapsed:.1f} s; statuses: {statuses}")
    print(f"requests/s: {pages / elapsed:.0f}")


if __name__ == "__main__":
    main()
