"""The run after a write-back: HubSpot's records re-read through the cheaper door, a hand-made change never missed.

The portal stamps its changes with the runs' own clock, so what each run finds since its cursor is exact.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import DEMO_TENANT

from leadpulse.connectors.hubspot import Door, HubSpotConnector, cheaper_door
from leadpulse.connectors.paging import load_cursor
from leadpulse.connectors.settings import HubSpotSettings
from leadpulse.core.cli.demo import TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import ConnectorContext, PropertySpec, PropertyWrite
from leadpulse.core.model import ContactKind
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

ANCHOR = datetime(2026, 3, 2, tzinfo=UTC)  # the portal's "today": its generated history ends here
START = ANCHOR + timedelta(hours=9)
BETWEEN_RUNS = 60.0
STREAMS = ("contacts", "calls", "emails", "meetings", "notes", "tasks")
#: job titles no title rule of the demo tenant matches: "Student" on one of them takes exactly 10 points away
PLAIN_TITLE = ("chief", "vp", "head of", "director", "manager", "student", "intern", "teacher")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def portal_on(sandbox_factory, clock: ManualClock, contacts: int) -> Sandbox:
    sb = sandbox_factory("hubspot", contacts=contacts, seed=21, anchor_ms=ms(ANCHOR))
    sb.crm.clock_ms = lambda: ms(clock.now())
    return sb


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def portal(sandbox_factory, clock) -> Sandbox:
    return portal_on(sandbox_factory, clock, 300)


def sync(sb: Sandbox, state_dir: Path, clock: ManualClock) -> tuple[RunSummary, Counter[str]]:
    """One whole run, a minute after the last; what it did and the calls the portal answered, by route."""
    clock.advance(BETWEEN_RUNS)
    before = Counter({route: sum(by.values()) for route, by in sb.stats.by_route().items()})
    tenant = sandbox_tenant(DEMO_TENANT, sb.base_url, lookback_seconds=0)
    summary = sync_tenant(tenant, state_dir=state_dir, clock=clock,
                          environ={TOKEN_VARIABLE: sb.credentials["access_token"]})
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    after = Counter({route: sum(by.values()) for route, by in sb.stats.by_route().items()})
    return summary, after - before


def scores(sb: Sandbox) -> dict[str, str | None]:
    return {sb.crm.id_of(i): sb.vendor.properties_of(sb.crm.id_of(i)).get("leadpulse_score")
            for i in range(sb.crm.size)}


def task_keys(sb: Sandbox) -> list[str]:
    return [t["properties"].get("leadpulse_task_key") for t in sb.vendor.created_tasks()]


def plain_titled(sb: Sandbox, count: int) -> list[str]:
    found = [sb.crm.id_of(i) for i in range(sb.crm.size)
             if not any(word in (sb.crm.record(i).get("title") or "").lower() for word in PLAIN_TITLE)]
    return found[:count]


# -- the choice ---------------------------------------------------------------------------------------------------

def test_past_a_fifth_of_the_contacts_listing_them_all_beats_searching_the_changed_ones():
    # 200 list pages at 19 a second against 43 search pages at 4 a second: the line sits at 42 search pages
    assert cheaper_door(4_200, 20_000, calls_per_second=19, linked=False) is Door.SEARCH
    assert cheaper_door(4_300, 20_000, calls_per_second=19, linked=False) is Door.LIST
    assert cheaper_door(20_000, 20_000, calls_per_second=19, linked=False) is Door.LIST


def test_a_slower_general_limit_moves_the_line_towards_the_search():
    assert cheaper_door(4_300, 20_000, calls_per_second=10, linked=False) is Door.SEARCH
    assert cheaper_door(8_100, 20_000, calls_per_second=10, linked=False) is Door.LIST


def test_an_engagement_search_page_also_costs_its_associations_read():
    # at 6 calls a second: 35 list pages take 5.8 s; 20 search pages 5 s alone, 6.7 s with their associations reads
    assert cheaper_door(2_000, 3_500, calls_per_second=6, linked=False) is Door.SEARCH
    assert cheaper_door(2_000, 3_500, calls_per_second=6, linked=True) is Door.LIST


def test_equal_times_go_to_the_search_which_reads_less():
    # 10 search pages at 4 a second and 50 list pages at 20 a second both take 2.5 s
    assert cheaper_door(1_000, 5_000, calls_per_second=20, linked=False) is Door.SEARCH
    assert cheaper_door(1_001, 5_000, calls_per_second=20, linked=False) is Door.LIST


# -- the connector: the door follows how many records the last write touched ---------------------------------------

def connect(sb: Sandbox) -> HubSpotConnector:
    settings = HubSpotSettings(base_url=sb.base_url, lookback_seconds=0)
    return HubSpotConnector(ConnectorContext("acme", settings, {"access_token": sb.credentials["access_token"]}))


@pytest.mark.parametrize(("written", "door"), [(300, Door.SEARCH), (1_500, Door.LIST)])
def test_the_contacts_a_write_touched_are_read_by_the_door_their_number_makes_cheaper(sandbox_factory, written, door):
    sb = sandbox_factory("hubspot", contacts=2_000, seed=3)
    connector = connect(sb)
    connector.ensure_properties([PropertySpec("leadpulse_score", "Score", "number")])
    first = list(connector.pull("contacts", None, started_at=datetime.now(UTC)))
    ids = [sb.crm.id_of(i) for i in range(0, 2_000, 2_000 // written)][:written]
    writes = [PropertyWrite(f"w{n}", cid, ContactKind.CONTACT, {"leadpulse_score": n}) for n, cid in enumerate(ids)]
    for start in range(0, written, 100):
        assert all(r.ok for r in connector.write_properties(writes[start:start + 100]))
    sb.stats.reset()
    started = datetime.now(UTC) + timedelta(milliseconds=5)

    pages = list(connector.pull("contacts", first[-1].cursor, started_at=started))

    pulled = [c.id for p in pages for c in p.contacts]
    assert set(ids) <= set(pulled) and len(pulled) == len(set(pulled))
    searches, lists = sb.stats.count("contacts.search"), sb.stats.count("contacts.list")
    if door is Door.SEARCH:  # the three pages of changes, and the count of the contacts
        assert (searches, lists) == (3 + 1, 0) and set(pulled) == set(ids)
    else:  # the first page of changes and the count, then every contact
        assert (searches, lists) == (2, 20) and len(pulled) == 2_000
    assert load_cursor(pages[-1].cursor) == {"phase": "search", "since": ms(started)}


def test_a_listing_cut_short_resumes_by_listing_and_ends_at_the_window_it_began(sandbox_factory):
    sb = sandbox_factory("hubspot", contacts=2_000, seed=3)
    connector = connect(sb)
    first = list(connector.pull("contacts", None, started_at=datetime.now(UTC)))
    sb.crm.touch(1_900, seed=2)
    started = datetime.now(UTC) + timedelta(milliseconds=5)
    cut = []
    for page in connector.pull("contacts", first[-1].cursor, started_at=started):
        cut.append(page)
        if len(cut) == 3:
            break
    assert load_cursor(cut[-1].cursor)["phase"] == "list"
    searches = sb.stats.count("contacts.search")

    rest = list(connector.pull("contacts", cut[-1].cursor, started_at=started + timedelta(minutes=5)))

    ids = [c.id for p in cut + rest for c in p.contacts]
    assert len(ids) == len(set(ids)) == 2_000
    assert sb.stats.count("contacts.search") == searches  # the resumed read chose no door again
    assert load_cursor(rest[-1].cursor) == {"phase": "search", "since": ms(started)}


# -- whole runs ---------------------------------------------------------------------------------------------------

def test_the_run_after_a_full_write_back_lists_the_contacts_and_rescores_a_field_changed_by_hand(portal, clock,
                                                                                                 tmp_path):
    full, _ = sync(portal, tmp_path, clock)
    assert full.written == portal.crm.size
    written, keys = scores(portal), task_keys(portal)
    hand = plain_titled(portal, 1)[0]
    clock.advance(1)
    portal.crm.edit_contact(hand, title="Student")  # someone in the portal, between the runs

    echo, calls = sync(portal, tmp_path, clock)

    assert calls["contacts.list"] == 3 and calls["contacts.search"] == 2  # first page and count, then the list
    assert echo.written == 1
    now = scores(portal)
    assert float(now[hand]) == pytest.approx(float(written[hand]) - 10)
    assert {cid: s for cid, s in now.items() if cid != hand} == {cid: s for cid, s in written.items() if cid != hand}
    assert task_keys(portal) == keys and len(set(keys)) == len(keys)
    with Store.open(sandbox_tenant(DEMO_TENANT, portal.base_url).store_path(tmp_path)) as store:
        stored = store.contact(hand)
        assert stored is not None and stored.fields["title"] == "Student"


def test_a_run_after_a_small_write_back_searches_only_what_it_touched(portal, clock, tmp_path):
    sync(portal, tmp_path, clock)
    sync(portal, tmp_path, clock)
    hands = plain_titled(portal, 2)
    for hand in hands:
        portal.crm.edit_contact(hand, title="Student")
    rescored, news = sync(portal, tmp_path, clock)
    assert rescored.written == 2
    assert news["owners.list"] == 1  # hand-made changes: the portal's owners and lifecycle order are asked again

    echo, calls = sync(portal, tmp_path, clock)

    assert echo.pulled == 2 and echo.written == 0
    # only its own writes came back, which change nothing scoring reads: one search a stream and nothing else
    assert calls == Counter({f"{stream}.search": 1 for stream in STREAMS})


def test_the_third_run_makes_one_call_a_stream(portal, clock, tmp_path):
    sync(portal, tmp_path, clock)
    echo, _ = sync(portal, tmp_path, clock)
    assert echo.written == echo.tasks == 0

    third, calls = sync(portal, tmp_path, clock)

    assert third.pulled == third.written == 0
    assert calls == Counter({f"{stream}.search": 1 for stream in STREAMS})
