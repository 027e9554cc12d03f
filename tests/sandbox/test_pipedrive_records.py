"""The company behind the persons: deals won and lost, organizations, and persons deleted or merged."""
import pytest
from test_pipedrive_contract import ANCHOR_MS, RFC3339, V2

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.pipedrive import rfc3339
from leadpulse.sandbox.pipedrive_records import Fate


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=400, seed=4, anchor_ms=ANCHOR_MS)


@pytest.fixture
def api(company) -> V2:
    return V2(company)


def with_fate(company: Sandbox, fate: Fate) -> int:
    """The first person with ``fate`` who had activities."""
    return next(i for i in range(company.crm.size)
                if company.vendor.fates.fate(i) is fate and len(company.crm.tenant.activities(i)) > 2)


def test_won_and_lost_deals_name_their_person_and_when_they_closed(company, api):
    won, _ = api.page_all("/deals", status="won", limit=50)
    lost = api.get("/deals", status="lost", limit=500).json()["data"]
    both = api.get("/deals", status="won,lost", limit=500).json()["data"]
    converted = [i + 1 for i in range(company.crm.size)
                 if company.crm.record(i)["converted"] and company.vendor.fates.fate(i) is not Fate.DELETED]
    assert won and lost and len(both) == len(won) + len(lost)
    assert all(d["status"] == "won" and RFC3339.match(d["won_time"]) and d["lost_time"] is None for d in won)
    assert all(d["status"] == "lost" and RFC3339.match(d["lost_time"]) and d["lost_reason"] for d in lost)
    assert sorted({company.vendor.fates.survivor(i - 1) + 1 for i in converted}) == sorted({d["person_id"]
                                                                                          for d in won})
    person = won[0]["person_id"]
    assert [d["id"] for d in api.get("/deals", person_id=person).json()["data"]] == [
        d["id"] for d in both if d["person_id"] == person]
    assert api.get(f"/deals/{won[0]['id']}").json()["data"] == won[0]
    assert api.get("/deals", status="closed").status_code == 400


def test_deals_read_incrementally_by_update_time(company, api):
    since = ANCHOR_MS - 30 * 86_400_000
    recent = api.get("/deals", updated_since=rfc3339(since), sort_by="update_time", limit=500).json()["data"]
    every = api.get("/deals", limit=500).json()["data"]
    assert recent and [d["update_time"] for d in recent] == sorted(d["update_time"] for d in recent)
    assert sorted(d["id"] for d in recent) == sorted(d["id"] for d in every if d["update_time"] >= rfc3339(since))


def test_organizations_read_in_bulk_with_their_firmographics(company, api):
    person = api.get("/persons", limit=1).json()["data"][0]
    orgs = api.get("/organizations", ids=f"{person['org_id']},2,3").json()["data"]
    org = next(o for o in orgs if o["id"] == person["org_id"])
    fields = {f["field_name"]: f for f in api.get("/organizationFields").json()["data"]}
    industry = fields["Industry"]
    revenue = org["custom_fields"][fields["Annual revenue"]["field_code"]]
    assert sorted(o["id"] for o in orgs) == sorted({person["org_id"], 2, 3})
    assert org["custom_fields"][industry["field_code"]] in [o["id"] for o in industry["options"]]
    assert org["custom_fields"][company.vendor.org_field_key("Number of employees")] > 0
    assert set(revenue) == {"value", "currency"} and fields["Annual revenue"]["field_type"] == "monetary"
    assert api.get("/organizations", ids=",".join(map(str, range(1, 102)))).status_code == 400


def test_a_deleted_person_is_not_listed_but_reads_as_deleted_and_cannot_be_written(company, api):
    index = with_fate(company, Fate.DELETED)
    listed = [p["id"] for p in api.page_all("/persons", limit=500)[0]]
    read = api.get(f"/persons/{index + 1}").json()["data"]
    assert index + 1 not in listed and read["is_deleted"] is True
    assert api.patch(f"/persons/{index + 1}", {"name": "Back Again"}).status_code == 404
    assert api.get("/activities", person_id=index + 1).json()["data"] == []


def test_a_merged_persons_activities_and_deal_belong_to_the_survivor(company, api):
    index = with_fate(company, Fate.MERGED)
    survivor = company.vendor.fates.survivor(index)
    theirs = {a.id for a in company.crm.tenant.activities(index) if a.kind.value != "note"}
    read = {a["id"]: a for a in api.get("/activities", person_id=survivor + 1, limit=500).json()["data"]}
    assert api.get(f"/persons/{index + 1}").json()["data"]["is_deleted"] is True
    assert index + 1 not in [p["id"] for p in api.page_all("/persons", limit=500)[0]]
    assert theirs and theirs <= set(read)
    assert all(read[i]["update_time"] == api.get(f"/persons/{survivor + 1}").json()["data"]["update_time"]
               for i in theirs if i in read)
