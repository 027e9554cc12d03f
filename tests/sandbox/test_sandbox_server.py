"""The vendor-neutral server, driven through a toy vendor with plain requests."""
import pytest
import requests

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock, Window
from leadpulse.sandbox.server import Response, Vendor, VendorError, route


class Toy(Vendor):
    name = "toy"

    def windows(self):
        return [Window("BURST", limit=3, seconds=10)]

    def limit_headers(self, verdict):
        return {"X-Remaining": str(verdict.state("BURST").remaining)}

    def error(self, status, message, **context):
        return VendorError(status, {"oops": message})

    @route("GET", "/people", name="people.list")
    def list_people(self, request):
        start = int(request.arg("from", "0"))
        return {"people": [self.crm.record(i)["email"] for i in range(start, min(start + 10, self.crm.size))]}

    @route("GET", "/people/batch", name="people.batch")
    def batch(self, request):
        return {"batch": True}

    @route("PATCH", "/people/{id}", name="people.update")
    def update(self, request):
        index = self.contact_index(request.params["id"])
        fault = self.faults.record_fault(request.params["id"])
        if fault:
            raise self.error(fault.status, fault.message)
        return Response(200, {"updated": self.crm.write(index, request.json())})

    @route("POST", "/login", name="login", auth=False, limited=False)
    def login(self, request):
        return {"token": self.tokens.issue()}


@pytest.fixture
def toy():
    with Sandbox.start(Toy, contacts=25, seed=1, rate_limits=False) as sb:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {sb.credentials['access_token']}"
        sb.http = session
        yield sb


def test_routes_answer_json_from_the_tenant(toy):
    answer = toy.http.get(f"{toy.base_url}/people", params={"from": 20})
    assert answer.status_code == 200
    assert len(answer.json()["people"]) == 5


def test_literal_path_wins_over_a_parameter(toy):
    assert toy.http.get(f"{toy.base_url}/people/batch").json() == {"batch": True}


def test_unknown_route_answers_the_vendor_404(toy):
    answer = toy.http.get(f"{toy.base_url}/nowhere")
    assert answer.status_code == 404 and "oops" in answer.json()


def test_missing_token_answers_401(toy):
    assert requests.get(f"{toy.base_url}/people").status_code == 401


def test_writes_apply_and_move_updated_at(toy):
    before = toy.crm.contact("3")["updated_ms"]
    answer = toy.http.patch(f"{toy.base_url}/people/3", json={"title": "CTO"})
    assert answer.json()["updated"] > before
    assert toy.crm.contact("3")["title"] == "CTO"


def test_malformed_json_answers_400_in_vendor_shape(toy):
    answer = toy.http.patch(f"{toy.base_url}/people/3", data=b"{nope")
    assert answer.status_code == 400 and "oops" in answer.json()


def test_unknown_contact_answers_404(toy):
    assert toy.http.patch(f"{toy.base_url}/people/999", json={}).status_code == 404


def test_injected_status_hits_the_next_calls_only(toy):
    toy.faults.fail_next("people.*", status=503, times=2)
    codes = [toy.http.get(f"{toy.base_url}/people").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert toy.stats.count("people.list", 503) == 2


def test_dropped_connection_gives_no_answer_but_applies_the_write(toy):
    toy.faults.drop_next("people.update")
    with pytest.raises(requests.ConnectionError):
        toy.http.patch(f"{toy.base_url}/people/4", json={"title": "Dropped"})
    assert toy.crm.contact("4")["title"] == "Dropped"


def test_truncated_body_is_cut_off(toy):
    toy.faults.truncate_next("people.list")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        toy.http.get(f"{toy.base_url}/people")


def test_hang_delays_past_a_client_timeout(toy):
    toy.faults.hang_next("people.list", seconds=1.0)
    with pytest.raises(requests.Timeout):
        toy.http.get(f"{toy.base_url}/people", timeout=0.2)


def test_record_faults_are_visible_to_the_vendor(toy):
    toy.faults.fail_records(["5"], status=409, message="locked")
    assert toy.http.patch(f"{toy.base_url}/people/5", json={}).json() == {"oops": "locked"}


def test_token_expires_after_n_calls_and_login_issues_a_new_one(toy):
    toy.faults.expire_token_after(2)
    codes = [toy.http.get(f"{toy.base_url}/people").status_code for _ in range(3)]
    assert codes == [200, 200, 401]
    token = requests.post(f"{toy.base_url}/login").json()["token"]
    assert requests.get(f"{toy.base_url}/people", headers={"Authorization": f"Bearer {token}"}).ok


def test_rate_limit_refuses_and_counts_with_manual_clock():
    clock = ManualClock()
    with Sandbox.start(Toy, contacts=5, clock=clock) as sb:
        headers = {"Authorization": f"Bearer {sb.credentials['access_token']}"}
        answers = [requests.get(f"{sb.base_url}/people", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["X-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        clock.advance(10.01)
        assert requests.get(f"{sb.base_url}/people", headers=headers).status_code == 200
        assert sb.stats.throttled == 1 and sb.stats.rate_limited == 1


def test_admin_route_arms_faults_and_reports_stats(toy):
    requests.post(f"{toy.base_url}/_sandbox/faults", json={"route": "people.list", "status": 500, "times": 1})
    assert toy.http.get(f"{toy.base_url}/people").status_code == 500
    stats = requests.get(f"{toy.base_url}/_sandbox/stats").json()
    assert stats["routes"]["people.list"] == {"500": 1}


def test_tls_sandbox_serves_https_with_its_own_ca():
    class SecureToy(Toy):
        tls = True

    with Sandbox.start(SecureToy, contacts=5, rate_limits=False) as sb:
        assert sb.base_url.startswith("https://127.0.0.1:")
        answer = requests.get(f"{sb.base_url}/people", verify=sb.ca_cert_path,
                              headers={"Authorization": f"Bearer {sb.credentials['access_token']}"})
        assert answer.ok


def test_stopped_sandbox_refuses_connections():
    sb = Sandbox.start(Toy, contacts=5)
    url = sb.base_url
    sb.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/people", timeout=1)
