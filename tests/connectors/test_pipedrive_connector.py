"""The Pipedrive connector against the Pipedrive sandbox, through pipedrive-python-lib (v1 and its request path for
v2): reads, write-back, follow-ups, and the burst window and daily token budget."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from leadpulse.connectors.budget import Window
from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import load_cursor
from leadpulse.connectors.pipedrive import PipedriveConnector, rfc3339
from leadpulse.connectors.settings import PipedriveSettings
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import ConnectorContext, PropertySpec, PropertyWrite, TaskPriority, TaskRequest
from leadpulse.core.errors import AuthError, ConnectorError, QuotaExhausted, SchemaError
from leadpulse.core.model import ActivityKind, ContactKind
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox import limits as sandbox_limits
from leadpulse.sandbox.pipedrive import parse_rfc3339
from leadpulse.sandbox.pipedrive_records import Fate, deal_of, organization

#: the tenant's "now" in the past, so whatever a test writes is newer than every generated record
ANCHOR_MS = parse_rfc3339("2025-06-01T00:00:00Z")
FIELDS = {"title": "Job title", "company": "Organization", "industry": "Organization.Industry",
          "employees": "Number of employees"}
SPECS = [PropertySpec("Lead score", "Lead score", "number"),
         PropertySpec("Lead band", "Lead band", "enumeration", ("unqualified", "intermediate", "qualified")),
         PropertySpec("Lead score reasons", "Lead reasons", "string")]


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=300, seed=7, anchor_ms=ANCHOR_MS)


@pytest.fixture
def big_company(sandbox_factory) -> Sandbox:
    """More persons than two list pages hold."""
    return sandbox_factory("pipedrive", contacts=1200, seed=7, anchor_ms=ANCHOR_MS)


class LinkedClock(ManualClock):
    """The connector's clock, moving the sandbox's rate-limit clock with it: a wait for a window passes on both at
    once, and no real time."""

    def __init__(self, sandbox_clock: sandbox_limits.ManualClock) -> None:
        super().__init__(datetime.now(UTC))
        self.sandbox_clock = sandbox_clock

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self.sandbox_clock.advance(seconds)


@pytest.fixture
def limited(sandbox_factory) -> tuple[Sandbox, LinkedClock]:
    """A company with Pipedrive's limits on (Lite, one seat), on a clock the connector moves."""
    clock = sandbox_limits.ManualClock()
    sb = sandbox_factory("pipedrive", contacts=300, seed=7, anchor_ms=ANCHOR_MS, rate_limits=True, clock=clock)
    return sb, LinkedClock(clock)


def connect(sb: Sandbox, *, clock=None, secret: str | None = None, fields=None, **settings) -> PipedriveConnector:
    settings.setdefault("lookback_seconds", 0)
    name = "access_token" if settings.get("auth") == "oauth" else "api_token"
    context = ConnectorContext(
        "acme", PipedriveSettings(base_url=sb.base_url, **settings), {name: secret or sb.credentials[name]},
        field_map=FIELDS if fields is None else fields, clock=clock or ManualClock(datetime.now(UTC)))
    return PipedriveConnector(context)


def pull(connector: PipedriveConnector, stream: str, cursor: str | None = None, started_at: datetime | None = None):
    """The stream's pages, read as a run starting now would (or at `started_at`), after whatever the test wrote: a
    read covers update times before the start's whole second."""
    return list(connector.pull(stream, cursor, started_at=started_at or datetime.now(UTC) + timedelta(seconds=1)))


def live_ids(sb: Sandbox) -> list[str]:
    return [str(i + 1) for i in range(sb.crm.size) if not sb.vendor.fates.gone(i)]


def v2(sb: Sandbox, method: str, path: str, body=None) -> dict:
    """A call to the sandbox's v2 API outside the connector: how a person would change the company meanwhile."""
    answer = requests.request(method, f"{sb.base_url}/api/v2/{path}", json=body, timeout=10,
                              headers={"x-api-token": sb.credentials["api_token"]})
    assert answer.ok, answer.text
    return answer.json()["data"]


def task(sb: Sandbox, person: str, n: int = 1) -> TaskRequest:
    owner = str(v2(sb, "GET", f"persons/{person}")["owner_id"])
    return TaskRequest(f"lp-acme-{person}-task-{n}", person, ContactKind.PERSON, owner, "Call them (score 12)",
                       "why: had a meeting", TaskPriority.HIGH, datetime(2026, 3, 2, 9, 30, tzinfo=UTC))


# -- reading ----------------------------------------------------------------------------------------------------


def test_a_full_pull_hands_over_every_live_person_one_list_call_per_500(big_company):
    pages = pull(connect(big_company), "persons")
    ids = [c.id for page in pages for c in page.contacts]
    assert sorted(ids, key=int) == live_ids(big_company) and len(set(ids)) == len(ids)
    assert big_company.stats.count("persons.list") == math.ceil(len(ids) / 500) == len(pages)
    assert big_company.stats.count("personFields.list") == 1


def test_mapped_fields_are_read_by_their_names_and_from_the_persons_organization(company):
    contacts = [c for page in pull(connect(company), "persons") for c in page.contacts]
    for contact in contacts[:50]:
        record = company.crm.record(int(contact.id) - 1)
        org = organization(company.crm, contact.raw["org_id"])
        assert contact.fields == {"title": record["title"], "company": org.name, "industry": org.company.industry,
                                  "employees": org.company.employees}
        assert contact.raw["Job title"] == record["title"] and contact.email == record["email"]
    orgs = {c.raw["org_id"] for c in contacts}
    assert company.stats.count("organizations.list") == math.ceil(len(orgs) / 100)  # one page of persons
    assert company.stats.count("organizations.get") == 0 and company.stats.count("organizationFields.list") == 1


def test_the_status_is_the_option_label_of_the_status_field(company):
    contacts = [c for page in pull(connect(company, status_field="Lifecycle stage"), "persons") for c in page.contacts]
    labels = {"subscriber": "Subscriber", "lead": "Lead", "mql": "MQL", "sql": "SQL", "opportunity": "Opportunity",
              "customer": "Customer"}
    assert all(c.status == labels[company.crm.record(int(c.id) - 1)["lifecycle"]] for c in contacts)


def test_without_a_status_field_the_status_is_read_from_the_field_the_tenant_writes_it_to(company):
    context = replace(connect(company).context, status_property="Lifecycle stage")
    contacts = [c for page in pull(PipedriveConnector(context), "persons") for c in page.contacts]
    assert contacts and all(c.status for c in contacts)
    assert {c.status for c in contacts} <= {"Subscriber", "Lead", "MQL", "SQL", "Opportunity", "Customer"}
    assert all(c.status is None for page in pull(connect(company), "persons") for c in page.contacts)


def test_a_field_name_the_company_lacks_stops_the_pull_naming_it(company):
    with pytest.raises(ConnectorError, match=r"fields.title names 'Job titel'.*display name"):
        pull(connect(company, fields={"title": "Job titel"}), "persons")


def test_activities_come_with_the_kinds_of_the_companys_activity_types(company):
    activities = [a for page in pull(connect(company), "activities") for a in page.activities]
    expected = {"call": ActivityKind.CALL, "meeting": ActivityKind.MEETING, "email": ActivityKind.EMAIL_SENT,
                "task": ActivityKind.TASK}
    assert activities and all(a.kind is expected[a.vendor_type] for a in activities)
    assert Counter(a.vendor_type for a in activities).keys() == expected.keys()
    assert company.stats.count("v1.activityTypes.list") == 1


def test_an_activity_is_handed_over_once_for_each_participant(company):
    first, second = live_ids(company)[:2]
    made = v2(company, "POST", "activities", {
        "subject": "Lunch", "type": "lunch", "due_date": "2025-06-03", "due_time": "12:30", "done": True,
        "note": "at Noma",
        "participants": [{"person_id": int(first), "primary": True}, {"person_id": int(second), "primary": False}]})
    activities = [a for page in pull(connect(company), "activities") for a in page.activities
                  if a.id.startswith(f"activity-{made['id']}-")]
    assert {a.contact_id: a.attributes["primary"] for a in activities} == {first: True, second: False}
    assert {(a.kind, a.vendor_type, a.occurred_at) for a in activities} == {
        (ActivityKind.MEETING, "lunch", datetime(2025, 6, 3, 12, 30, tzinfo=UTC))}


def test_won_deals_become_outcomes_and_lost_ones_lost_deal_activities(company):
    pages = pull(connect(company), "deals")
    outcomes = {o.contact_id: o for page in pages for o in page.outcomes}
    lost = {a.contact_id for page in pages for a in page.activities if a.kind is ActivityKind.DEAL_LOST}
    fates = company.vendor.fates
    deals = [(i, deal) for i in range(company.crm.size) if (deal := deal_of(company.crm, i)) is not None
             and fates.fate(i) is not Fate.DELETED]
    won = {str(fates.survivor(i) + 1): deal for i, deal in deals if deal.status == "won"}
    assert outcomes.keys() == won.keys() and all(o.converted for o in outcomes.values())
    assert all(o.converted_at == datetime.fromtimestamp(won[c].close_ms // 1000, UTC) for c, o in outcomes.items())
    assert lost == {str(fates.survivor(i) + 1) for i, deal in deals if deal.status == "lost"}


def test_deleted_and_merged_persons_are_left_out_of_the_lists_and_never_handed_over(company):
    fates = company.vendor.fates
    gone = {str(i + 1) for i in range(company.crm.size) if fates.gone(i)}
    pages = pull(connect(company), "persons")
    assert {fates.fate(int(g) - 1) for g in gone} == {Fate.DELETED, Fate.MERGED}
    assert gone.isdisjoint(c.id for page in pages for c in page.contacts)
    assert all(not page.gone for page in pages)  # v2 lists say nothing of them: see the connector's docstring


# -- incremental reads ----------------------------------------------------------------------------------------------


def test_an_incremental_pull_after_an_edit_returns_just_the_edited_person(company):
    connector = connect(company)
    cursor = pull(connector, "persons", started_at=datetime.now(UTC))[-1].cursor
    edited = live_ids(company)[17]
    v2(company, "PATCH", f"persons/{edited}", {"name": "Ada Lovelace"})
    pages = pull(connector, "persons", cursor)
    assert [(c.id, c.name) for page in pages for c in page.contacts] == [(edited, "Ada Lovelace")]


def test_the_cursor_stops_at_the_run_start_and_a_later_edit_waits_for_the_next_run(company):
    connector = connect(company)
    started = datetime.now(UTC) - timedelta(seconds=5)
    edited = live_ids(company)[3]
    v2(company, "PATCH", f"persons/{edited}", {"name": "Grace Hopper"})  # after the run started
    pages = pull(connector, "persons", started_at=started)
    assert edited not in {c.id for page in pages for c in page.contacts}
    assert load_cursor(pages[-1].cursor) == {"since": rfc3339(started)}
    later = pull(connector, "persons", pages[-1].cursor)
    assert [c.id for page in later for c in page.contacts] == [edited]


def test_a_pull_resumed_from_a_page_cursor_neither_loses_nor_repeats(big_company):
    connector = connect(big_company)
    started = datetime.now(UTC)
    pages = pull(connector, "persons", started_at=started)
    assert len(pages) == 3
    rest = pull(connector, "persons", pages[0].cursor, started_at=started + timedelta(hours=1))
    assert [c.id for page in rest for c in page.contacts] == [c.id for page in pages[1:] for c in page.contacts]
    assert rest[-1].cursor == pages[-1].cursor  # the resumed read keeps the window the stopped run began


def test_a_malformed_person_is_skipped_and_its_page_kept(company):
    good = v2(company, "GET", "persons/2")
    company.faults.fail_next("persons.list", 200, body={
        "success": True, "data": [{"id": 5, "name": "No Time"}, good], "additional_data": {"next_cursor": None}})
    [page] = pull(connect(company), "persons")
    assert [c.id for c in page.contacts] == ["2"]
    assert [(s.record_id, s.reason.split(":")[0]) for s in page.skipped] == [("5", "malformed persons record")]


def test_a_cut_off_answer_is_read_again(company):
    company.faults.truncate_next("persons.list")
    ids = [c.id for page in pull(connect(company), "persons") for c in page.contacts]
    assert sorted(ids, key=int) == live_ids(company)
    assert company.stats.count("persons.list") == 2


# -- writing -------------------------------------------------------------------------------------------------------


def test_missing_fields_are_created_once_with_the_types_of_their_values(company):
    connector = connect(company)
    connector.ensure_properties(SPECS)
    connector.ensure_properties(SPECS)
    made = {f["field_name"]: f for f in v2(company, "GET", "personFields?limit=500") if f["is_custom_field"]}
    assert {name: made[name]["field_type"] for name in ("Lead score", "Lead band", "Lead score reasons")} == {
        "Lead score": "double", "Lead band": "enum", "Lead score reasons": "varchar"}
    assert [o["label"] for o in made["Lead band"]["options"]] == ["unqualified", "intermediate", "qualified"]
    assert company.stats.count("personFields.create") == 3


def test_an_option_the_rules_now_use_is_added_to_the_field_and_the_old_ones_stay(company):
    connect(company).ensure_properties(SPECS)
    renamed = PropertySpec("Lead band", "Lead band", "enumeration", ("cold", "intermediate", "qualified"))
    connect(company).ensure_properties([renamed])
    band = next(f for f in v2(company, "GET", "personFields?limit=500") if f["field_name"] == "Lead band")
    assert [o["label"] for o in band["options"]] == ["unqualified", "intermediate", "qualified", "cold"]
    assert company.stats.count("personFields.options.add") == 1


def custom_field_names(sb: Sandbox) -> Counter[str]:
    return Counter(f["field_name"] for f in v2(sb, "GET", "personFields?limit=500") if f["is_custom_field"])


def test_a_field_whose_creation_lost_its_answer_is_found_not_made_twice(company):
    company.faults.drop_next("personFields.create", applied=True)  # Pipedrive made it; the answer never came
    connect(company).ensure_properties(SPECS)
    assert all(custom_field_names(company)[spec.name] == 1 for spec in SPECS)
    assert company.stats.count("personFields.create") == len(SPECS)


def test_a_field_creation_answered_with_a_5xx_and_not_made_is_sent_again(company):
    company.faults.fail_next("personFields.create", 503)
    connect(company).ensure_properties(SPECS)
    assert all(custom_field_names(company)[spec.name] == 1 for spec in SPECS)
    assert company.stats.count("personFields.create") == len(SPECS) + 1


def test_options_whose_adding_lost_its_answer_are_found_not_added_twice(company):
    connect(company).ensure_properties(SPECS)
    company.faults.drop_next("personFields.options.add", applied=True)
    renamed = PropertySpec("Lead band", "Lead band", "enumeration", ("cold", "intermediate", "qualified"))
    connect(company).ensure_properties([renamed])
    band = next(f for f in v2(company, "GET", "personFields?limit=500") if f["field_name"] == "Lead band")
    assert [o["label"] for o in band["options"]] == ["unqualified", "intermediate", "qualified", "cold"]
    assert company.stats.count("personFields.options.add") == 1


def test_an_activity_type_the_company_lacks_is_refused_before_anything_is_written(company):
    with pytest.raises(SchemaError, match=r"activity_type is 'todo'.*call, deadline, email, lunch, meeting, task"):
        connect(company, activity_type="todo").ensure_properties(SPECS)


def test_writes_patch_custom_fields_by_key_with_numbers_and_option_ids(company):
    connector = connect(company)
    connector.ensure_properties(SPECS)
    people = live_ids(company)[:3]
    results = connector.write_properties([
        PropertyWrite(f"w{p}", p, ContactKind.PERSON, {"Lead score": 12.5, "Lead band": "qualified",
                                                       "Lead score reasons": "x" * 300}) for p in people])
    assert [r.ok for r in results] == [True] * 3 and company.stats.count("persons.update") == 3
    fields = {f["field_name"]: f for f in v2(company, "GET", "personFields?limit=500")}
    written = v2(company, "GET", f"persons/{people[0]}")["custom_fields"]
    band = next(o["id"] for o in fields["Lead band"]["options"] if o["label"] == "qualified")
    assert written[fields["Lead score"]["field_code"]] == 12.5 and written[fields["Lead band"]["field_code"]] == band
    assert len(written[fields["Lead score reasons"]["field_code"]]) == 255


def test_a_deleted_persons_refusal_is_permanent_and_fails_only_its_write(company):
    connector = connect(company)
    connector.ensure_properties(SPECS)
    deleted = next(str(i + 1) for i in range(company.crm.size) if company.vendor.fates.fate(i) is Fate.DELETED)
    alive = live_ids(company)[0]
    results = connector.write_properties([PropertyWrite(f"w{p}", p, ContactKind.PERSON, {"Lead score": 3})
                                          for p in (deleted, alive)])
    assert [(r.ok, r.permanent) for r in results] == [(False, True), (True, False)]
    assert "404" in (results[0].error or "") and f"person {deleted}" in (results[0].error or "")


def test_a_refused_value_fails_its_write_to_be_tried_again(company):
    connector = connect(company)
    connector.ensure_properties(SPECS)
    company.faults.fail_records(["2"], status=400, message="Invalid value")
    [refused] = connector.write_properties([PropertyWrite("w2", "2", ContactKind.PERSON, {"Lead score": 3})])
    assert not refused.ok and not refused.permanent and "400" in (refused.error or "")


def test_the_status_field_is_created_when_first_written_and_gains_each_stage_as_it_comes(company):
    connector = connect(company, status_field="Lead stage")
    first, second = live_ids(company)[:2]
    results = connector.write_properties([PropertyWrite("a", first, ContactKind.PERSON, {"Lead stage": "MQL"}),
                                          PropertyWrite("b", second, ContactKind.PERSON, {"Lead stage": "SQL"})])
    stage = next(f for f in v2(company, "GET", "personFields?limit=500") if f["field_name"] == "Lead stage")
    assert all(r.ok for r in results) and stage["field_type"] == "enum"
    assert [o["label"] for o in stage["options"]] == ["MQL", "SQL"]
    statuses = {c.id: c.status for page in pull(connector, "persons") for c in page.contacts}
    assert (statuses[first], statuses[second]) == ("MQL", "SQL")


# -- follow-ups ----------------------------------------------------------------------------------------------------


def test_a_task_is_an_activity_for_the_persons_owner_with_its_token_in_the_note(company):
    person = live_ids(company)[5]
    request = task(company, person)
    [result] = connect(company).create_tasks([request])
    made = v2(company, "GET", f"activities/{result.remote_id}")
    assert result.ok and made["type"] == "task" and made["owner_id"] == int(request.owner_id or 0)
    assert made["participants"] == [{"person_id": int(person), "primary": True}]
    assert (made["due_date"], made["due_time"], made["subject"]) == ("2026-03-02", "09:30:00", request.subject)
    assert made["note"].endswith(f"leadpulse: {task_token(request.key)}") and made["done"] is False


def test_tasks_are_found_by_their_tokens_one_activities_list_a_person(company):
    connector = connect(company)
    first, second = live_ids(company)[5:7]
    made = [task(company, first, 1), task(company, first, 2), task(company, second, 1)]
    created = connector.create_tasks(made)
    before = company.stats.count("activities.list")
    never = task(company, second, 2)
    assert connector.find_tasks([*made, never]) == {t.key: r.remote_id for t, r in zip(made, created, strict=True)}
    assert company.stats.count("activities.list") - before == 2


def test_a_task_create_that_lost_its_answer_is_not_sent_again_and_comes_back_unknown(company):
    company.faults.drop_next("activities.create", applied=True)
    request = task(company, live_ids(company)[8])
    connector = connect(company)
    [result] = connector.create_tasks([request])
    assert not result.ok and result.outcome_unknown and company.stats.count("activities.create") == 1
    assert request.key in connector.find_tasks([request])


# -- limits ---------------------------------------------------------------------------------------------------------


def test_the_burst_window_follows_plan_and_token_a_little_under_pipedrives_figure(company):
    assert connect(company).api.budget.windows == [Window(18, 2.0)]
    assert connect(company, plan="ultimate").api.budget.windows == [Window(108, 2.0)]
    assert connect(company, auth="oauth", plan="premium").api.budget.windows == [Window(360, 2.0)]


def test_an_oauth_access_token_reads_as_the_api_token_does(company):
    pages = pull(connect(company, auth="oauth"), "persons")
    assert sorted((c.id for page in pages for c in page.contacts), key=int) == live_ids(company)


def test_a_refused_token_stops_with_a_message_naming_the_tenant_and_what_to_check(company):
    with pytest.raises(AuthError, match=r"'acme'.*401.*crm.secrets"):
        pull(connect(company, secret="revoked-0000"), "persons")


def test_writes_keep_within_the_burst_window_without_a_429(limited):
    sb, clock = limited
    connector = connect(sb, clock=clock)
    connector.ensure_properties(SPECS[:1])
    people = live_ids(sb)[:60]
    results = connector.write_properties([PropertyWrite(p, p, ContactKind.PERSON, {"Lead score": 1}) for p in people])
    assert all(r.ok for r in results) and sb.stats.count("persons.update") == 60
    assert sb.stats.rate_limited == 0 and sum(clock.slept) >= 4.0  # 60 calls and more take three windows


def test_a_burst_429_is_waited_out_and_sent_again(company):
    clock = ManualClock(datetime.now(UTC))
    company.faults.fail_next("persons.list", 429, headers={
        "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2", "x-daily-ratelimit-token-remaining": "29000"})
    ids = [c.id for page in pull(connect(company, clock=clock), "persons") for c in page.contacts]
    assert sorted(ids, key=int) == live_ids(company)
    assert company.stats.count("persons.list", status=429) == 1 and 2.0 in clock.slept


def test_a_spent_daily_budget_stops_the_run_and_nothing_more_is_sent(limited):
    sb, clock = limited
    connector = connect(sb, clock=clock)
    pages = connector.pull("activities", None, started_at=datetime.now(UTC))
    first = next(pages)
    sb.limits.tune("DAILY", limit=0)  # another integration of the company spends what the day had left
    with pytest.raises(QuotaExhausted, match=r"'acme'.*daily token budget is spent"):
        next(pages)
    sent = sb.stats.count()
    with pytest.raises(QuotaExhausted, match="0 tokens left"):
        connector.write_properties([PropertyWrite("w", "2", ContactKind.PERSON, {"Job title": "CEO"})])
    assert first.activities and sb.stats.count(status=429) == 1 and sb.stats.count() == sent
    assert connector.tokens_left() == 0


def test_the_edges_block_page_stops_the_run_as_quota_not_as_a_crash(limited):
    sb, clock = limited
    hammer = {"x-api-token": sb.credentials["api_token"]}
    for _ in range(35):  # another client of the token that keeps calling after its 429s
        requests.get(f"{sb.base_url}/api/v2/persons/2", headers=hammer, timeout=10)
    with pytest.raises(QuotaExhausted, match=r"403.*edge blocks this token"):
        pull(connect(sb, clock=clock), "persons")


def test_the_push_can_afford_what_the_days_tokens_leave_at_pipedrives_costs(limited):
    sb, clock = limited
    connector = connect(sb, clock=clock)
    assert connector.tokens_left() is None
    capacity = connector.push_capacity()
    assert capacity is not None and sb.stats.count("v1.users.me") == 1
    assert (capacity.units, capacity.write_cost, capacity.task_cost) == (30_000 - 2, 5, 15)
    assert (capacity.calls, capacity.calls_budget) == (10_000, "the API token's daily POST/PUT calls")
    assert connector.tokens_left() == 30_000 - 2


def test_the_push_counts_the_post_put_calls_an_api_token_has_left_and_none_for_an_oauth_app(limited):
    sb, clock = limited
    sb.limits.spend("WRITES", 9_990)  # the token's other scripts made 9,990 POST/PUT calls today
    capacity = connect(sb, clock=clock).push_capacity()
    assert capacity is not None and capacity.calls == 10
    oauth = connect(sb, clock=clock, auth="oauth").push_capacity()
    assert oauth is not None and oauth.calls is None


def test_the_organizations_stream_is_read_only_for_a_tenant_reading_organization_fields(company):
    assert connect(company).streams() == ("persons", "organizations", "activities", "deals", "gone_persons")
    assert connect(company, fields={"title": "Job title"}).streams() == ("persons", "activities", "deals",
                                                                        "gone_persons")
    first = pull(connect(company), "organizations")  # a first read: every person is read by the persons stream
    assert len(first) == 1 and not first[0].contacts and company.stats.count("organizations.list") == 0


def test_a_person_who_unsubscribed_from_marketing_email_is_opted_out(company):
    contacts = [c for page in pull(connect(company), "persons") for c in page.contacts]
    opted_out = {c.id for c in contacts if c.opted_out}
    assert opted_out and opted_out == {c.id for c in contacts if company.crm.record(int(c.id) - 1)["opted_out"]}
    assert all(c.raw["marketing_status"] == ("unsubscribed" if c.opted_out else "subscribed") for c in contacts)
