"""The HubSpot connector against the HubSpot sandbox, through hubspot-api-client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from leadpulse.connectors import hubspot
from leadpulse.connectors.budget import Window
from leadpulse.connectors.hubspot import TASK_KEY, Door, HubSpotConnector
from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import load_cursor
from leadpulse.connectors.settings import HubSpotSettings
from leadpulse.core.clock import ScaledClock
from leadpulse.core.contract import ConnectorContext, PropertySpec, PropertyWrite, TaskPriority, TaskRequest
from leadpulse.core.errors import AuthError, ConnectorError, SchemaError
from leadpulse.core.model import ActivityKind, ContactKind


def connect(sb, *, clock=None, **settings) -> HubSpotConnector:
    settings.setdefault("lookback_seconds", 0)
    context = ConnectorContext(
        "acme", HubSpotSettings(base_url=sb.base_url, **settings), {"access_token": sb.credentials["access_token"]},
        **({"clock": clock} if clock else {}),
    )
    return HubSpotConnector(context)


def now() -> datetime:
    return datetime.now(UTC)


def pull_all(connector, stream, cursor=None, started_at=None):
    pages = list(connector.pull(stream, cursor, started_at=started_at or now()))
    return pages, pages[-1].cursor


def contact_ids(pages):
    return [c.id for p in pages for c in p.contacts]


def test_first_run_lists_every_contact_and_ends_with_a_search_cursor_at_the_run_start(hubspot_sandbox):
    started = now()
    pages, cursor = pull_all(connect(hubspot_sandbox), "contacts", started_at=started)
    ids = contact_ids(pages)
    assert len(ids) == len(set(ids)) == hubspot_sandbox.crm.size
    assert load_cursor(cursor) == {"phase": "search", "since": int(started.timestamp() * 1000)}
    assert hubspot_sandbox.stats.count("contacts.list") == len(pages)


def test_contacts_carry_normalised_fields_numbers_and_an_outcome(hubspot_sandbox):
    pages, _ = pull_all(connect(hubspot_sandbox), "contacts")
    contact = pages[0].contacts[0]
    record = hubspot_sandbox.crm.contact(contact.id)
    assert contact.kind is ContactKind.CONTACT
    assert contact.fields["title"] == record["title"]
    assert isinstance(contact.fields["employees"], int | float | type(None))
    assert contact.status in {"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead",
                              "opportunity", "customer", "evangelist", "other"}
    outcomes = {o.contact_id: o for p in pages for o in p.outcomes}
    customers = [c for p in pages for c in p.contacts if c.status == "customer"]
    assert customers and all(outcomes[c.id].converted for c in customers)


def test_engagements_arrive_with_their_contacts_and_neutral_kinds(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    kinds = set()
    for stream in ("calls", "emails", "meetings", "notes", "tasks"):
        pages, _ = pull_all(connector, stream)
        activities = [a for p in pages for a in p.activities]
        assert activities, stream
        assert all(a.contact_id and a.vendor_type == stream for a in activities)
        kinds |= {a.kind for a in activities}
    assert {ActivityKind.CALL, ActivityKind.MEETING, ActivityKind.NOTE, ActivityKind.TASK,
            ActivityKind.EMAIL_SENT} <= kinds


def test_a_list_cut_short_resumes_from_its_page_cursor_without_gap_or_duplicate(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    started = now()
    first = []
    for page in connector.pull("contacts", None, started_at=started):
        first.append(page)
        if len(first) == 2:
            break
    rest, _ = pull_all(connector, "contacts", first[-1].cursor, started_at=started + timedelta(minutes=5))
    ids = contact_ids(first) + contact_ids(rest)
    assert sorted(ids, key=int) == sorted({*ids}, key=int)
    assert len(ids) == hubspot_sandbox.crm.size


def test_incremental_run_picks_up_exactly_the_changed_contacts(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    _, cursor = pull_all(connector, "contacts")
    changed = set(hubspot_sandbox.crm.touch(25, seed=4))
    second_start = now() + timedelta(milliseconds=5)  # clear of the touches' millisecond: no boundary overlap
    pages, cursor2 = pull_all(connector, "contacts", cursor, started_at=second_start)
    assert set(contact_ids(pages)) == changed
    nothing, _ = pull_all(connector, "contacts", cursor2, started_at=second_start + timedelta(seconds=1))
    assert contact_ids(nothing) == [] and len(nothing) == 1


@pytest.mark.slow
def test_incremental_search_over_more_than_ten_thousand_changes_has_no_gap_and_no_duplicate(sandbox_factory,
                                                                                           monkeypatch):
    # listing would be cheaper here; a portal several times larger makes the search the cheaper door
    monkeypatch.setattr(hubspot, "cheaper_door", lambda *args, **kwargs: Door.SEARCH)
    sb = sandbox_factory("hubspot", contacts=10_250, seed=11)
    connector = connect(sb)
    _, cursor = pull_all(connector, "contacts")
    changed = set(sb.crm.touch(10_250, seed=5))
    assert len(changed) > 10_000
    pages, _ = pull_all(connector, "contacts", cursor)
    ids = contact_ids(pages)
    assert len(ids) == len(set(ids)) and set(ids) == changed
    assert sb.stats.count("contacts.search", 400) == 0


def test_the_cursor_never_passes_the_run_start_and_later_changes_wait_for_the_next_run(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    _, cursor = pull_all(connector, "contacts")
    started = now() - timedelta(milliseconds=5)  # clear of the touches' millisecond
    late = hubspot_sandbox.crm.touch(3, seed=9)  # changed after this run started
    pages, cursor2 = pull_all(connector, "contacts", cursor, started_at=started)
    assert not set(contact_ids(pages)) & set(late)
    assert load_cursor(cursor2)["since"] == int(started.timestamp() * 1000)
    following, _ = pull_all(connector, "contacts", cursor2)
    assert set(late) <= set(contact_ids(following))


def test_new_engagements_are_found_by_search_with_their_contacts(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    _, cursor = pull_all(connector, "meetings")
    hubspot_sandbox.crm.add_activity("5", "meeting")
    pages, _ = pull_all(connector, "meetings", cursor)
    assert [a.contact_id for p in pages for a in p.activities] == ["5"]
    assert hubspot_sandbox.stats.count("associations.batch_read") == 1


def test_a_malformed_record_is_skipped_and_recorded_while_the_page_is_kept(hubspot_sandbox):
    good = {"id": "7", "properties": {"email": "a@example.com", "lastmodifieddate": "2026-01-01T00:00:00Z"},
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "archived": False}
    bad = {"id": "8", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "not a time", "archived": False}
    hubspot_sandbox.faults.fail_next("contacts.list", status=200, body={"results": [good, bad]})
    page = next(connect(hubspot_sandbox).pull("contacts", None, started_at=now()))
    assert [c.id for c in page.contacts] == ["7"]
    assert [s.record_id for s in page.skipped] == ["8"]


def test_lifecycle_order_comes_from_the_portal(hubspot_sandbox):
    order = connect(hubspot_sandbox).status_order()
    assert order.index("lead") < order.index("marketingqualifiedlead") < order.index("customer")


def test_owners_are_listed_by_id(hubspot_sandbox):
    owners = connect(hubspot_sandbox).owners()
    assert owners and all(name for name in owners.values())


# write-back --------------------------------------------------------------------------------------------


SPECS = [PropertySpec("leadpulse_score", "Lead score", "number"),
         PropertySpec("leadpulse_band", "Lead band", "enumeration", ("cold", "warm", "hot"))]


def test_missing_properties_and_their_group_are_created_once(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    connector.ensure_properties(SPECS)
    # the two contact properties and the task key, in a leadpulse group on contacts and one on tasks
    assert hubspot_sandbox.stats.count("properties.create") == 3
    assert hubspot_sandbox.stats.count("groups.create") == 2


def band_options(sb) -> list[str]:
    return [o["value"] for o in sb.vendor.catalogue.properties["contacts"]["leadpulse_band"]["options"]]


def test_a_band_added_or_renamed_in_the_rules_is_added_to_the_options_and_the_old_ones_stay(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    renamed = PropertySpec("leadpulse_band", "Lead band", "enumeration", ("cold", "warm", "scorching", "blazing"))
    connector.ensure_properties([SPECS[0], renamed])
    assert band_options(hubspot_sandbox) == ["cold", "warm", "hot", "scorching", "blazing"]
    results = connector.write_properties([PropertyWrite("k1", "3", ContactKind.CONTACT, {"leadpulse_band": "blazing"})])
    assert [r.ok for r in results] == [True]
    connector.ensure_properties([SPECS[0], renamed])
    assert hubspot_sandbox.stats.count("properties.update") == 1


def test_a_batch_refused_whole_with_a_400_is_split_so_only_the_refused_write_fails(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    writes = [PropertyWrite(f"k{i}", str(i), ContactKind.CONTACT, {"leadpulse_score": i, "leadpulse_band": "warm"})
              for i in range(3, 8)]
    writes[3] = PropertyWrite("k6", "6", ContactKind.CONTACT, {"leadpulse_score": 6, "leadpulse_band": "lukewarm"})
    results = connector.write_properties(writes)
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert "400" in results[3].error and "lukewarm" in results[3].error
    assert [hubspot_sandbox.crm.contact(str(i)).get("leadpulse_score") for i in (3, 4, 5, 7)] == ["3", "4", "5", "7"]


def test_batch_update_writes_string_values(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    results = connector.write_properties(
        [PropertyWrite("k1", "3", ContactKind.CONTACT, {"leadpulse_score": 12.0, "leadpulse_band": "hot"})])
    assert [r.ok for r in results] == [True]
    assert hubspot_sandbox.crm.contact("3")["leadpulse_score"] == "12"


def test_a_207_keeps_the_good_records_and_reports_the_bad_one(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    hubspot_sandbox.faults.fail_records(["4"])
    writes = [PropertyWrite(f"k{i}", str(i), ContactKind.CONTACT, {"leadpulse_score": i}) for i in (3, 4, 5)]
    results = connector.write_properties(writes)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error
    assert hubspot_sandbox.crm.contact("5")["leadpulse_score"] == "5"


def task(key, contact="6"):
    return TaskRequest(key, contact, ContactKind.CONTACT, None, "Call: score 42", "Why: +10 pricing page",
                       TaskPriority.HIGH, now() + timedelta(days=2))


def test_tasks_are_created_on_the_contact_and_found_again_by_their_key(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    results = connector.create_tasks([task("lp-acme-6-band-hot-1"), task("lp-acme-7-band-hot-1", "7")])
    assert all(r.ok and r.remote_id for r in results)
    assert connector.find_tasks([task("lp-acme-6-band-hot-1"), task("lp-acme-6-band-hot-2")]) == {
        "lp-acme-6-band-hot-1": results[0].remote_id}
    created = hubspot_sandbox.crm.tasks()
    assert len(created) == 2
    assert any(task_token("lp-acme-7-band-hot-1") in str(t.attributes) for t in created)


def test_a_task_batch_refused_whole_with_a_400_is_split_so_only_the_refused_task_fails(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    tasks = [task("lp-acme-6-band-hot-1"), task("lp-acme-999999-band-hot-1", "999999"), task("lp-acme-7-band-hot-1", "7")]
    results = connector.create_tasks(tasks)
    assert [r.ok for r in results] == [True, False, True]
    assert "400" in results[1].error and "999999" in results[1].error and not results[1].outcome_unknown
    assert sorted(t["contacts"] for t in hubspot_sandbox.vendor.created_tasks()) == [["6"], ["7"]]


def test_a_task_the_answer_does_not_confirm_comes_back_with_its_outcome_unknown(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    answer = {"status": "COMPLETE", "results": [], "startedAt": "2026-01-01T00:00:00Z",
              "completedAt": "2026-01-01T00:00:01Z"}
    hubspot_sandbox.faults.fail_next("tasks.batch_create", status=201, body=answer)
    [result] = connector.create_tasks([task("lp-acme-6-band-hot-1")])
    assert not result.ok and result.outcome_unknown and "looked up by its key" in result.error


def test_a_task_create_that_lost_its_answer_is_not_repeated_and_comes_back_unknown(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    hubspot_sandbox.faults.drop_next("tasks.batch_create", applied=True)
    [result] = connector.create_tasks([task("lp-acme-6-band-hot-1")])
    assert not result.ok and result.outcome_unknown
    assert len(hubspot_sandbox.crm.tasks()) == 1 and hubspot_sandbox.stats.count("tasks.batch_create") == 1
    assert connector.find_tasks([task("lp-acme-6-band-hot-1")])


# failures and limits -------------------------------------------------------------------------------------


def test_a_property_group_create_that_lost_its_answer_counts_as_created(hubspot_sandbox):
    hubspot_sandbox.faults.drop_next("groups.create", applied=True)
    connector = connect(hubspot_sandbox, clock=ScaledClock(1000))
    connector.ensure_properties(SPECS)
    assert hubspot_sandbox.stats.count("groups.create", 409) == 1
    assert hubspot_sandbox.stats.count("properties.create") == 3  # the two contact properties and the task key


def test_a_refused_property_group_create_is_a_schema_error_naming_the_tenant_and_the_group(hubspot_sandbox):
    hubspot_sandbox.faults.fail_next("groups.create", 400)
    with pytest.raises(SchemaError) as caught:
        connect(hubspot_sandbox).ensure_properties(SPECS)
    message = str(caught.value)
    assert "'acme'" in message and "property group 'leadpulse'" in message and "400" in message
    assert "run again" in message


@pytest.mark.parametrize(("route", "call"), [
    ("owners.list", lambda connector: connector.owners()),
    ("contacts.list", lambda connector: list(connector.pull("contacts", None, started_at=now()))),
    ("tasks.search", lambda connector: connector.find_tasks([task("lp-acme-6-band-hot-1")])),
])
def test_a_refused_read_ends_with_a_connector_error_naming_the_tenant_and_what_to_do(hubspot_sandbox, route, call):
    hubspot_sandbox.faults.fail_next(route, 404)
    with pytest.raises(ConnectorError) as caught:
        call(connect(hubspot_sandbox))
    message = str(caught.value)
    assert "'acme'" in message and "HubSpot refused" in message and "404" in message and "tenant file" in message
    assert hubspot_sandbox.credentials["access_token"] not in message and "header" not in message.lower()


def test_401_stops_with_a_message_naming_the_tenant_and_what_to_check(hubspot_sandbox):
    context = ConnectorContext("acme", HubSpotSettings(base_url=hubspot_sandbox.base_url),
                               {"access_token": "pat-na1-wrong-token"})
    with pytest.raises(AuthError) as caught:
        list(HubSpotConnector(context).pull("contacts", None, started_at=now()))
    message = str(caught.value)
    assert "'acme'" in message and "crm.secrets.access_token" in message and "401" in message
    assert "pat-na1-wrong-token" not in message


@pytest.mark.parametrize("fault", ["429", "503", "drop", "truncate"])
def test_failures_on_reads_are_ridden_out_with_nothing_lost(hubspot_sandbox, fault):
    route = "contacts.list"
    inject = {
        "429": lambda: hubspot_sandbox.faults.fail_next(route, 429, times=4),
        "503": lambda: hubspot_sandbox.faults.fail_next(route, 503, times=3),
        "drop": lambda: hubspot_sandbox.faults.drop_next(route, times=2),
        "truncate": lambda: hubspot_sandbox.faults.truncate_next(route, times=2),
    }
    inject[fault]()
    connector = connect(hubspot_sandbox, clock=ScaledClock(1000))
    pages, _ = pull_all(connector, "contacts")
    assert sorted(contact_ids(pages), key=int) == [str(i) for i in sorted(int(x) for x in contact_ids(pages))]
    assert len(set(contact_ids(pages))) == hubspot_sandbox.crm.size


def test_the_client_budget_keeps_a_rate_limited_pull_free_of_429s(sandbox_factory):
    sb = sandbox_factory("hubspot", contacts=2_000, seed=2, rate_limits=True, tier="starter", time_scale=20)
    connector = connect(sb, clock=ScaledClock(20), tier="starter")
    for stream in connector.streams():
        pull_all(connector, stream)
    assert sb.stats.count() > 100  # more calls than one ten-second window allows
    assert sb.stats.rate_limited == 0
    assert connector.context.stats.rate_limited == 0


def test_budget_windows_follow_the_tier(hubspot_sandbox):
    def windows(**settings):
        return connect(hubspot_sandbox, **settings).budget.windows

    assert windows(tier="starter")[0] == Window(100, 10.0)
    assert windows(tier="enterprise")[0] == Window(190, 10.0)
    assert windows(capacity_pack=True)[0] == Window(250, 10.0)
    assert Window(4, 1.0, "search") in windows()


def test_runs_back_to_back_share_one_budget_and_see_no_429(sandbox_factory):
    sb = sandbox_factory("hubspot", contacts=50, seed=2, rate_limits=True, time_scale=1)
    clock = ScaledClock(1)
    since = {"phase": "search", "since": int(now().timestamp() * 1000) - 60_000}
    for _ in range(3):  # each run makes six searches; HubSpot allows four a second
        connector = connect(sb, clock=clock)
        for stream in connector.streams():
            pull_all(connector, stream, json.dumps(since))
    assert sb.stats.count() >= 18
    assert sb.stats.rate_limited == 0


def test_each_crm_account_gets_its_own_budget(hubspot_sandbox):
    clock = ScaledClock(1)
    first, again = connect(hubspot_sandbox, clock=clock), connect(hubspot_sandbox, clock=clock)
    assert first.budget is again.budget
    other = HubSpotConnector(ConnectorContext(
        "beta", HubSpotSettings(base_url=hubspot_sandbox.base_url), {"access_token": "another-app-token"}, clock=clock))
    assert other.budget is not first.budget


# the task key -------------------------------------------------------------------------------------------------


def keyed_tasks(n: int) -> list[TaskRequest]:
    return [task(f"lp-acme-{i + 1}-band-hot-1", str(i + 1)) for i in range(n)]


def test_tasks_carry_their_key_in_a_unique_property_and_are_looked_up_one_batch_read_per_hundred(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    prop = hubspot_sandbox.vendor.catalogue.properties["tasks"][TASK_KEY]
    assert prop["hasUniqueValue"] is True
    created = connector.create_tasks(keyed_tasks(120)[:100]) + connector.create_tasks(keyed_tasks(120)[100:])
    assert all(r.ok for r in created)
    asked = [*keyed_tasks(120), task("lp-acme-1-band-hot-2", "1")]
    before = hubspot_sandbox.stats.count("tasks.batch_read")
    found = connector.find_tasks(asked[:100]) | connector.find_tasks(asked[100:])
    assert found == {r.key: r.remote_id for r in created}
    assert hubspot_sandbox.stats.count("tasks.batch_read") - before == 2
    assert hubspot_sandbox.stats.count("tasks.search") == 0
    assert connector.lookup_lag() == timedelta(0)  # a read of the records themselves: no search lag


def test_a_second_task_with_a_key_hubspot_holds_is_refused_and_comes_back_unknown_to_be_looked_up(hubspot_sandbox):
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    [first] = connector.create_tasks([task("lp-acme-6-band-hot-1")])
    [again] = connector.create_tasks([task("lp-acme-6-band-hot-1")])
    assert first.ok and not again.ok and again.outcome_unknown
    assert len(hubspot_sandbox.crm.tasks()) == 1


def test_a_task_key_property_another_run_created_meanwhile_is_used_not_taken_for_a_refusal(hubspot_sandbox):
    """A run killed with its create of the property in flight, or another run, makes it between this run's look
    and its own create, which HubSpot answers 409: the tasks must still carry their keys."""
    first = connect(hubspot_sandbox)
    first.ensure_properties(SPECS)
    connector = connect(hubspot_sandbox)
    looked = connector._properties_of

    def stale_first_look(object_type):
        found = looked(object_type)
        if object_type == "tasks" and not stale.get("done"):
            stale["done"] = True
            found.pop(TASK_KEY)
        return found

    stale: dict = {}
    connector._properties_of = stale_first_look
    connector.ensure_properties(SPECS)
    assert hubspot_sandbox.stats.count("properties.create", 409) == 1
    [created] = connector.create_tasks(keyed_tasks(1))
    assert created.ok
    assert [t["properties"].get(TASK_KEY) for t in hubspot_sandbox.vendor.created_tasks()] == [
        task_token(keyed_tasks(1)[0].key)]


def test_a_portal_refusing_unique_task_properties_has_its_tasks_looked_up_by_search_five_keys_a_call(hubspot_sandbox):
    hubspot_sandbox.vendor.unique_value_objects = frozenset()
    connector = connect(hubspot_sandbox)
    connector.ensure_properties(SPECS)
    assert TASK_KEY not in hubspot_sandbox.vendor.catalogue.properties["tasks"]
    created = connector.create_tasks(keyed_tasks(12))
    found = connector.find_tasks(keyed_tasks(12))
    assert found == {r.key: r.remote_id for r in created}
    assert hubspot_sandbox.stats.count("tasks.search") == 3  # 12 keys, five a search
    assert connector.lookup_lag() == timedelta(seconds=0)  # the lookback of `connect`, which tests set to 0
