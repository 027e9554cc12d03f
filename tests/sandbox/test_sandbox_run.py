"""Starting sandboxes: the pytest fixture, the CLI, determinism, and flat memory at a million contacts."""
import os
import subprocess
import sys

import psutil
import pytest
import requests

from leadpulse.sandbox import Sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def page(sb, after=None, limit=100):
    params = {"limit": limit, "properties": "email,jobtitle,lifecyclestage", **({"after": after} if after else {})}
    return requests.get(f"{sb.base_url}/crm/v3/objects/contacts", params=params,
                        headers={"Authorization": f"Bearer {sb.credentials['access_token']}"}).json()


def test_fixture_gives_a_running_sandbox_with_credentials(hubspot_sandbox):
    assert hubspot_sandbox.base_url.startswith("http://127.0.0.1:")
    assert len(page(hubspot_sandbox)["results"]) == 100


def test_same_seed_gives_the_same_tenant_twice():
    with Sandbox.start("hubspot", 150, seed=11, anchor_ms=1_750_000_000_000) as first, \
            Sandbox.start("hubspot", 150, seed=11, anchor_ms=1_750_000_000_000) as second:
        assert page(first)["results"] == page(second)["results"]


def test_living_crm_edits_show_on_the_wire(hubspot_sandbox):
    hubspot_sandbox.crm.edit_contact("2", title="Head of Growth")
    assert page(hubspot_sandbox, limit=2)["results"][1]["properties"]["jobtitle"] == "Head of Growth"


def test_serve_command_prints_base_url_and_credentials():
    process = subprocess.Popen([sys.executable, "-m", "leadpulse.sandbox", "serve", "--crm", "hubspot", "--contacts", "10"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base_url = process.stdout.readline().split(": ", 1)[1].strip()
        token = process.stdout.readline().split('"access_token": "')[1].split('"')[0]
        answer = requests.get(f"{base_url}/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and "X-HubSpot-RateLimit-Max" in answer.headers
    finally:
        process.terminate()
        process.wait(timeout=10)


def calls(base_url, token, after=None):
    params = {"limit": 100, "associations": "contacts", **({"after": after} if after else {})}
    return requests.get(f"{base_url}/crm/v3/objects/calls", params=params,
                        headers={"Authorization": f"Bearer {token}"}).json()


def test_factory_passes_activities_per_contact_to_the_tenant(sandbox_factory):
    quiet = sandbox_factory("hubspot", contacts=50, activities_per_contact=0)
    busy = sandbox_factory("hubspot", contacts=500, activities_per_contact=15)
    assert calls(quiet.base_url, quiet.credentials["access_token"])["results"] == []
    assert 13.5 < sum(len(busy.crm.activities(i)) for i in range(500)) / 500 < 16.5


def test_serve_command_takes_activities_per_contact():
    process = subprocess.Popen([sys.executable, "-m", "leadpulse.sandbox", "serve", "--crm", "hubspot", "--contacts", "30",
                                "--activities-per-contact", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base_url = process.stdout.readline().split(": ", 1)[1].strip()
        token = process.stdout.readline().split('"access_token": "')[1].split('"')[0]
        assert calls(base_url, token)["results"] == []
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_a_million_contacts_page_with_flat_memory():
    with Sandbox.start("hubspot", 1_000_000, seed=3, rate_limits=False) as sb:
        rss = psutil.Process().memory_info().rss
        for k in range(200):  # warm up, then read pages spread over the whole tenant
            page(sb, after=str(1 + k * 4_999))
        warm = psutil.Process().memory_info().rss
        for k in range(400):
            page(sb, after=str(1 + k * 2_500))
        last = page(sb, after="999901")
        assert len(last["results"]) == 100 and "paging" not in last
        assert psutil.Process().memory_info().rss - warm < 20 * 2**20
        assert warm - rss < 60 * 2**20


@pytest.mark.slow
def test_a_tenant_of_a_million_engagements_pages_them_with_flat_memory():
    with Sandbox.start("hubspot", 100_000, seed=3, rate_limits=False, activities_per_contact=10) as sb:
        token, rss = sb.credentials["access_token"], psutil.Process().memory_info().rss
        for k in range(100):  # warm up, then read pages spread over the whole tenant
            calls(sb.base_url, token, after=str(1 + k * 31_000))
        warm = psutil.Process().memory_info().rss
        for k in range(300):
            page_ = calls(sb.base_url, token, after=str(1 + k * 10_600))
            ids = [int(result["id"]) for result in page_["results"]]
            assert len(ids) == 100 and ids == sorted(ids) and ids[0] > k * 10_600
        after = str(99_990 * 32)  # within the last ten contacts: fewer than 100 calls left
        assert "paging" not in calls(sb.base_url, token, after=after)
        assert psutil.Process().memory_info().rss - warm < 20 * 2**20
        assert warm - rss < 60 * 2**20
