"""Whole HubSpot syncs (pull, store, score, outbox, push) against the HubSpot sandbox, through hubspot-api-client."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import DEMO_TENANT

from leadpulse.connectors import budget, hubspot
from leadpulse.connectors.hubspot import Door
from leadpulse.connectors.idempotency import task_token
from leadpulse.core.cli.demo import TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ManualClock, ScaledClock
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.runtime import pipeline
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import Run
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

CONTACTS = 300
SEED = 21
OWNED = ("leadpulse_score", "leadpulse_fit", "leadpulse_engagement", "leadpulse_grade", "leadpulse_band",
         "leadpulse_quadrant", "leadpulse_reasons", "lifecyclestage")


class Crash(BaseException):
    """Stands for the process being killed: nothing after it runs, no handler swallows it."""


def tenant_for(sb: Sandbox, **connection):
    connection.setdefault("lookback_seconds", 0)
    return sandbox_tenant(DEMO_TENANT, sb.base_url, **connection)


def run(sb: Sandbox, state_dir: Path, clock=None, **options):
    return sync_tenant(tenant_for(sb), state_dir=state_dir, clock=clock or ManualClock(AS_OF),
                       environ={TOKEN_VARIABLE: sb.credentials["access_token"]}, **options)


AS_OF = datetime.now(UTC).replace(microsecond=0)


def crm_state(sb: Sandbox) -> tuple[dict, Counter]:
    """What the portal holds that leadpulse writes: owned properties per contact, and tasks by (contact, subject)."""
    properties = {}
    for index in range(sb.crm.size):
        contact_id = sb.crm.id_of(index)
        values = sb.vendor.properties_of(contact_id)
        properties[contact_id] = {name: values.get(name) for name in OWNED}
    tasks = Counter((tuple(t["contacts"]), t["properties"]["hs_task_subject"]) for t in sb.vendor.created_tasks())
    return properties, tasks


def task_tokens(sb: Sandbox) -> list[str]:
    return [token for t in sb.vendor.created_tasks()
            for token in re.findall(r"lpk[0-9a-f]{24}", t["properties"].get("hs_task_body") or "")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The portal after one uninterrupted full sync: what every interrupted sync must end with."""
    with Sandbox.start("hubspot", CONTACTS, SEED, rate_limits=False) as sb:
        summary = run(sb, tmp_path_factory.mktemp("reference"))
        assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
        return crm_state(sb)


@pytest.fixture
def portal(sandbox_factory):
    return sandbox_factory("hubspot", contacts=CONTACTS, seed=SEED)


@pytest.mark.slow
def test_an_incremental_run_picks_up_exactly_what_changed_across_more_than_ten_thousand_records(sandbox_factory, tmp_path,
                                                                                                monkeypatch):
    # listing would be cheaper here; a portal several times larger makes the search the cheaper door
    monkeypatch.setattr(hubspot, "cheaper_door", lambda *args, **kwargs: Door.SEARCH)
    sb = sandbox_factory("hubspot", contacts=10_400, seed=5)
    # real timestamps (the sandbox stamps changes with the wall clock), rate-limit waits a thousand times shorter
    clock = ScaledClock(1000)
    run(sb, tmp_path, clock)
    run(sb, tmp_path, clock)  # absorbs the echo of the first run's writes
    changed = set(sb.crm.touch(10_200, seed=8))
    added = [sb.crm.add_activity(sb.crm.id_of(i), "meeting", outcome="completed") for i in range(0, 10_400, 400)]
    summary = run(sb, tmp_path, clock)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert len(changed) > 10_000
    assert summary.pulled == len(changed) + len(added)
    assert sb.stats.count(status=400) == 0
    tenant = tenant_for(sb)
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.counts()["contacts"] == 10_400
        for activity in added:
            assert any(a.id.startswith(f"meetings-{activity.id}-") for a in
                       store.activities(sb.crm.id_of(activity.contact_index)))


def test_a_task_hubspot_did_not_confirm_is_settled_by_its_key_on_the_next_run_not_created_again(portal, tmp_path,
                                                                                             reference):
    run(portal, tmp_path, dry_run=True)
    queued = sum(reference[1].values())
    unconfirming = {"status": "COMPLETE", "results": [], "startedAt": "2026-01-01T00:00:00Z",
                    "completedAt": "2026-01-01T00:00:01Z"}
    portal.faults.fail_next("tasks.batch_create", status=201, body=unconfirming, times=-(-queued // 100))
    first = run(portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks == 0
    tenant = tenant_for(portal)
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.outbox.counts()[("task", "sending")] == queued
        created_anyway = store.outbox.sending_tasks()[0]  # HubSpot had created it, its answer did not say so
    pipeline.open_connector(tenant, {"access_token": portal.credentials["access_token"]},
                            ManualClock(AS_OF)).create_tasks([created_anyway])
    second = run(portal, tmp_path)
    assert second.outcome is RunOutcome.SUCCEEDED and second.tasks == queued - 1
    assert crm_state(portal) == reference
    tokens = task_tokens(portal)
    assert len(tokens) == len(set(tokens)) == queued


def tenant_with_bands(sb: Sandbox, bands: list[dict]):
    data = yaml.safe_load(DEMO_TENANT.read_text())
    data["crm"]["connection"].update(base_url=sb.base_url, lookback_seconds=0)
    data["scoring"]["bands"] = bands
    return validate_tenant(data, DEMO_TENANT)


def test_a_band_added_to_the_rules_is_added_to_the_portal_options_and_every_contact_gets_its_band(portal, tmp_path):
    clock = ManualClock(AS_OF)
    run(portal, tmp_path, clock)
    bands = yaml.safe_load(DEMO_TENANT.read_text())["scoring"]["bands"]
    tenant = tenant_with_bands(portal, [*bands, {"name": "hot", "min": 14}])
    clock.advance(60)
    summary = sync_tenant(tenant, state_dir=tmp_path, clock=clock,
                          environ={TOKEN_VARIABLE: portal.credentials["access_token"]})
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.written > 0
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.outbox.failures() == [] and store.band_counts().get("hot")
        for index in range(CONTACTS):
            contact_id = portal.crm.id_of(index)
            assert portal.vendor.properties_of(contact_id)["leadpulse_band"] == store.score(contact_id).band


def test_the_tenants_daily_limit_ends_a_run_as_quota_exhausted_and_a_later_run_carries_on(portal, tmp_path, reference):
    environ = {TOKEN_VARIABLE: portal.credentials["access_token"]}
    capped = tenant_for(portal, daily_limit=20)
    first = sync_tenant(capped, state_dir=tmp_path, clock=ManualClock(AS_OF), environ=environ)
    assert (first.outcome, first.api_calls) == (RunOutcome.QUOTA_EXHAUSTED, 20)
    assert "daily_limit" in first.error and "'demo-hubspot'" in first.error
    again = sync_tenant(capped, state_dir=tmp_path, clock=ManualClock(AS_OF), environ=environ)
    assert (again.outcome, again.api_calls) == (RunOutcome.QUOTA_EXHAUSTED, 0)
    assert portal.stats.count() == 20
    raised = sync_tenant(tenant_for(portal, daily_limit=100_000), state_dir=tmp_path, clock=ManualClock(AS_OF),
                         environ=environ)
    assert raised.outcome is RunOutcome.SUCCEEDED
    assert crm_state(portal) == reference


def test_calls_older_than_a_day_no_longer_count_against_the_daily_limit(tmp_path):
    tenant = sandbox_tenant(DEMO_TENANT, "http://127.0.0.1:9", daily_limit=100)
    with Store.open(tmp_path / "t.sqlite") as store:
        for hours_ago, calls in ((25, 70), (23, 30)):
            run_id = store.start_run(tenant.name, AS_OF - timedelta(hours=hours_ago))
            store.finish_run(run_id, AS_OF - timedelta(hours=hours_ago), RunOutcome.SUCCEEDED,
                             RunCounts(api_calls=calls))
        current = Run(tenant.name, store.start_run(tenant.name, AS_OF), AS_OF, 0.0)
        assert pipeline.daily_allowance(tenant, store, current) == 70


def test_task_tokens_are_found_again_from_the_idempotency_key():
    assert task_token("lp-acme-1-band-qualified-1") != task_token("lp-acme-1-band-qualified-2")
    assert re.fullmatch(r"lpk[0-9a-f]{24}", task_token("lp-acme-1-band-qualified-1"))


def test_a_task_for_an_owner_the_portal_no_longer_has_is_created_unassigned(portal, tmp_path):
    ids = [portal.crm.id_of(i) for i in range(CONTACTS)]
    for contact_id in ids:
        portal.crm.edit_contact(contact_id, owner_id=99999)
    summary = run(portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
    tasks = portal.vendor.created_tasks()
    assert tasks and all(not t["properties"].get("hubspot_owner_id") for t in tasks)
    with Store.open(tenant_for(portal).store_path(tmp_path)) as store:
        assert store.crm_fact("owners") and "99999" not in store.crm_fact("owners")


def test_a_task_subject_gives_the_score_and_the_top_reasons(portal, tmp_path):
    run(portal, tmp_path)
    subjects = [t["properties"]["hs_task_subject"] for t in portal.vendor.created_tasks()]
    assert subjects and all(re.search(r"scored [\d.]+ .*: [+-]\d", s) for s in subjects)


class CrmTime:
    """The portal's rate-limit clock reading the client's manual clock: a window passes for both at once."""

    time_scale = 1.0

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.monotonic()


def test_a_rerun_right_after_a_killed_run_stays_under_the_window_the_killed_one_spent(sandbox_factory, tmp_path,
                                                                                       monkeypatch):
    clock = ManualClock(AS_OF)
    portal = sandbox_factory("hubspot", contacts=1_500, seed=SEED, rate_limits=True, tier="starter",
                             clock=CrmTime(clock))
    tenant = tenant_for(portal, tier="starter")
    environ = {TOKEN_VARIABLE: portal.credentials["access_token"]}
    original = Store.apply_page

    def apply_or_die(self, page, run_id=None):
        if portal.stats.count() >= 95:  # the 100 calls the portal allows in 10 s are (almost) spent
            raise Crash()
        return original(self, page, run_id)

    monkeypatch.setattr(Store, "apply_page", apply_or_die)
    with pytest.raises(Crash):
        sync_tenant(tenant, state_dir=tmp_path, clock=clock, environ=environ)
    monkeypatch.undo()
    assert portal.stats.rate_limited == 0
    # A new process: it has no budget of its own yet, only what the store noted of the calls before it.
    monkeypatch.setattr(budget, "_SHARED", {})
    summary = sync_tenant(tenant, state_dir=tmp_path, clock=clock, environ=environ)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert summary.api_calls > 50  # more than the 5 the window had left
    assert portal.stats.rate_limited == 0
