"""The v2 activities list in update-time order, paged whole, against a plain sort of every activity listed."""
import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest
from test_pipedrive_contract import ANCHOR_MS, V2

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.pipedrive import rfc3339
from leadpulse.sandbox.pipedrive_records import Fate
from leadpulse.sandbox.synth import DAY_MS, ActivityKind


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=500, seed=11, anchor_ms=ANCHOR_MS)


def to_the_ms(ms: int) -> str:
    """RFC 3339 with milliseconds, so a window can open or close exactly at one activity."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def change_while_running(company: Sandbox, api: V2) -> int:
    """Add, edit, merge and delete as users and clients would while a sync runs; returns when the changes began."""
    fates, tenant = company.vendor.fates, company.crm.tenant
    began = company.crm.clock_ms()
    kept = [i + 1 for i in range(tenant.size) if fates.fate(i) is Fate.KEPT and not fates.merged_into(i)
            and sum(a.kind is not ActivityKind.NOTE for a in tenant.activities(i)) > 2]
    survivor = next(i + 1 for i in range(tenant.size) if fates.fate(i) is Fate.KEPT and fates.merged_into(i))
    for n, person in enumerate(kept[:6]):
        company.crm.add_activity(str(person), ActivityKind.CALL, ANCHOR_MS - n * 30 * DAY_MS)
    created = api.post("/activities", {"type": "task", "participants": [{"person_id": kept[6], "primary": True}]})
    assert api.patch(f"/activities/{created.json()['data']['id']}", {"done": True}).ok
    edited, handed = (next(a.id for a in tenant.activities(p - 1) if a.kind is not ActivityKind.NOTE)
                      for p in kept[7:9])
    assert api.patch(f"/activities/{edited}", {"note": "Called back"}).ok
    assert api.patch(f"/activities/{handed}", {"participants": [{"person_id": kept[9], "primary": True}]}).ok
    company.vendor.merge_persons(str(kept[9]), str(kept[10]))  # the handed activity moves with its new holder
    company.vendor.merge_persons(str(survivor), str(kept[11]))  # and a drawn merge's activities with its survivor
    company.vendor.delete_person(str(kept[12]))
    return began


@pytest.mark.slow
def test_the_update_time_list_pages_every_activity_in_the_order_a_full_sort_gives(company):
    api = V2(company)
    began = change_while_running(company, api)
    listed = {a["id"]: a for a in api.page_all("/activities", limit=500)[0]}  # id order: another path
    keys = sorted((company.vendor.activity_update_ms(i), i) for i in listed)
    middle, late = keys[len(keys) // 3][0], keys[2 * len(keys) // 3][0]
    windows = [(None, None), (middle, late), (began, None)]
    assert len(keys) > 2500 and sum(ms >= began for ms, _ in keys) > 10
    assert all(listed[i]["update_time"] == rfc3339(ms) for ms, i in keys)
    # 50 a page, so pages break inside the run of activities that share the first millisecond of the history
    assert max(Counter(ms for ms, _ in keys).values()) > 2 * 50
    for (since, until), direction in itertools.product(windows, ("asc", "desc")):
        window = {**({"updated_since": to_the_ms(since)} if since else {}),
                  **({"updated_until": to_the_ms(until)} if until else {})}
        paged, _ = api.page_all("/activities", sort_by="update_time", sort_direction=direction, limit=50, **window)
        expected = [i for ms, i in keys if (since is None or ms >= since) and (until is None or ms < until)]
        assert [a["id"] for a in paged] == (expected if direction == "asc" else expected[::-1]), (window, direction)
        assert all(a == listed[a["id"]] for a in paged)
