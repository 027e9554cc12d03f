"""`leadpulse demo --crm`: the sandbox demo against each CRM it plays, a HubSpot portal, a Salesforce org or a
Pipedrive company."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
from click.testing import CliRunner
from support import REPO_CONFIG

from leadpulse.core.cli import demo
from leadpulse.core.cli.main import main
from leadpulse.core.config.files import load_tenant
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

SALESFORCE_FIELDS = ("Lead_Score__c", "Lead_Fit__c", "Lead_Engagement__c", "Lead_Grade__c", "Lead_Band__c",
                     "Lead_Quadrant__c", "Lead_Score_Reasons__c")


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def started(monkeypatch) -> list[Sandbox]:
    """The sandboxes the demo starts, left for the test to look into once the demo has stopped them."""
    found: list[Sandbox] = []
    start = Sandbox.start

    def keep(crm: str, contacts: int = 1000, seed: int = 0, **options: Any) -> Sandbox:
        found.append(start(crm, contacts, seed, **options))
        return found[-1]

    monkeypatch.setattr(Sandbox, "start", keep)
    return found


def test_demo_with_crm_salesforce_syncs_the_sandbox_org_and_shows_the_hottest_open_leads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--crm", "salesforce", "--contacts", "300", "--folder", "kept")
    assert result.exit_code == 0, result.output
    assert "Starting a Salesforce sandbox with 300 Leads and Contacts" in result.output
    assert "full sync" in result.output and "incremental sync" in result.output
    assert result.output.count("demo-salesforce") == 2 and "demo-hubspot" not in result.output
    assert "40 Leads held a meeting" in result.output
    assert "band distribution" in result.output and "hottest open leads" in result.output
    assert "tenant file, store and org are in kept" in result.output
    with Store.open(tmp_path / "kept" / "state" / "demo-salesforce.sqlite") as store:
        assert [r.id for r in store.runs()] == [2, 1]


def test_the_salesforce_demo_leaves_the_tenants_score_fields_on_the_orgs_leads(tmp_path, started):
    result = run("demo", "--crm", "salesforce", "--contacts", "300", "--folder", str(tmp_path / "kept"))
    assert result.exit_code == 0, result.output
    [sb] = started
    kept = json.loads((tmp_path / "kept" / "portal.json").read_text())
    assert kept["crm"] == "salesforce" and len(kept["livened"]) == 40
    for lead in kept["livened"]:
        assert lead.startswith("00Q")
        record = sb.crm.record(sb.crm.index_of(lead))
        assert isinstance(record["Lead_Score__c"], float) and record["Lead_Band__c"]
        assert kept["properties"][lead] == {name: record[name] for name in SALESFORCE_FIELDS}
    assert kept["tasks"] and all(task["WhoId"].startswith("00Q") for task in kept["tasks"])


def test_the_salesforce_demos_next_steps_look_at_a_lead_it_scored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--crm", "salesforce", "--contacts", "200", "--folder", "kept")
    assert result.exit_code == 0, result.output
    explain, history, status = (line.split()[1:] for line in result.output.split("Look closer:")[1].strip().splitlines())
    assert explain[1].startswith("00Q")
    assert run(*explain).exit_code == 0 and run(*history).exit_code == 0
    shown = run(*status)
    assert shown.exit_code == 0 and "demo-salesforce" in shown.output and "succeeded" in shown.output


def test_the_demos_help_lists_the_crms_it_plays():
    result = run("demo", "--help")
    assert result.exit_code == 0
    assert "--crm [hubspot|pipedrive|salesforce]" in result.output and "default: hubspot" in result.output


def test_the_demo_refuses_a_crm_it_does_not_play(tmp_path):
    result = run("demo", "--crm", "zoho", "--folder", str(tmp_path / "kept"))
    assert result.exit_code == 2
    assert "Invalid value for '--crm'" in result.output and "'hubspot', 'pipedrive', 'salesforce'" in result.output
    assert not (tmp_path / "kept").exists()


def test_the_export_demo_refuses_a_crm_since_it_reads_no_crm(tmp_path):
    result = run("demo", "--crm", "salesforce", "--from-export", "--folder", str(tmp_path / "kept"))
    assert result.exit_code == 2
    assert "--from-export scores the sample export in config/sample with no CRM at all" in result.output
    assert "leave out --crm salesforce" in result.output
    assert not (tmp_path / "kept").exists()


@pytest.mark.parametrize(("crm", "secrets"), [
    (demo.HUBSPOT, {"DEMO_HUBSPOT_TOKEN": "the-token"}),
    (demo.SALESFORCE, {"DEMO_SF_PASSWORD": "the-password", "DEMO_SF_CLIENT_SECRET": "the-client-secret"}),
    (demo.PIPEDRIVE, {"DEMO_PIPEDRIVE_TOKEN": "the-api-token"}),
], ids=lambda item: item.name if isinstance(item, demo.DemoCrm) else "")
def test_the_demo_hands_the_sandboxes_credentials_over_the_variables_its_tenant_file_names(crm, secrets):
    tenant = load_tenant(crm.tenant_file)
    credentials = {"access_token": "the-token", "password": "the-password", "client_secret": "the-client-secret",
                   "username": "integration@leadpulse.sandbox", "api_token": "the-api-token"}
    assert demo.secrets_environ(tenant, credentials) == secrets


def test_each_crm_the_demo_plays_has_its_tenant_file_in_the_checkout():
    # resolved: an install the suite runs against may hold the checkout's config/ through a link
    assert {crm.tenant_file.resolve().relative_to(REPO_CONFIG).as_posix()
            for crm in demo.DEMO_CRMS.values()} == {
        "demo/hubspot-sandbox.yaml", "demo/salesforce-sandbox.yaml", "demo/pipedrive-sandbox.yaml"}
    assert all(load_tenant(crm.tenant_file).crm.kind == crm.name for crm in demo.DEMO_CRMS.values())


def test_the_pipedrive_demo_scores_the_livened_persons_anew_and_leaves_its_fields_and_activities_in_the_company(
        tmp_path, started):
    result = run("demo", "--crm", "pipedrive", "--contacts", "300", "--folder", str(tmp_path / "kept"))
    assert result.exit_code == 0, result.output
    assert "Starting a Pipedrive sandbox with 300 persons" in result.output
    assert result.output.count("demo-pipedrive") == 2 and "40 persons held a meeting" in result.output
    with Store.open(tmp_path / "kept" / "state" / "demo-pipedrive.sqlite") as store:
        incremental, full = store.runs()
        livened_scores = [store.score(person) for person in json.loads(
            (tmp_path / "kept" / "portal.json").read_text())["livened"]]
    assert full.written > 0 and incremental.written >= 40  # a meeting and a reply move every livened person
    assert all(score is not None and score.run_id == incremental.id for score in livened_scores)
    [sb] = started
    kept = json.loads((tmp_path / "kept" / "portal.json").read_text())
    assert kept["crm"] == "pipedrive" and len(kept["livened"]) == 40
    names = {field.key: field.name for field in sb.vendor.fields.custom.values()}
    for person in kept["livened"]:
        custom = sb.vendor.person(sb.crm.index_of(person), labels=True)["custom_fields"]
        held = {names[key]: value for key, value in custom.items() if names.get(key, "").startswith("Lead ")}
        assert kept["properties"][person]["Lead score"] == held["Lead score"]
        assert kept["properties"][person]["Lead band"] == held["Lead band"]["label"]
    assert kept["tasks"] and all("leadpulse: lpk" in task["note"] and task["type"] == "task" for task in kept["tasks"])
    assert len(kept["tasks"]) == full.tasks + incremental.tasks
