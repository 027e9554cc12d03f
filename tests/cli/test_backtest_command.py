"""`leadpulse backtest` on the sample export the demo scores: tables, JSON, a proposed file beside the current one,
moments by --at or --every/--since, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import invoke

from leadpulse.core.cli.main import main


def backtest(demo: Path, *args: str) -> tuple[int, str]:
    return invoke("backtest", "--config-dir", str(demo / "config"), "--state-dir", str(demo / "state"), *args)


def test_the_table_pools_the_moments_and_says_what_the_figures_cannot(demo):
    code, output = backtest(demo)
    assert code == 0, output
    assert "demo-file: 12 moments from" in output and "horizon 90d" in output
    for title in ("all moments pooled", "current: by band, highest first", "current: by quadrant",
                  "current: by grade", "current: by status the rules set", "current: by moment"):
        assert title in output
    assert "fields are as last pulled" in output


def test_json_gives_every_moment_with_its_horizon_and_the_figures(demo):
    code, output = backtest(demo, "--json", "--horizon", "60d")
    assert code == 0, output
    found = json.loads(output)
    assert found["tenant"] == "demo-file" and found["horizon_days"] == 60
    assert len(found["moments"]) == 12 and all(m["horizon_days"] == 60 for m in found["moments"])
    [current] = found["rules"]
    pooled = current["pooled"]
    assert pooled["contacts"] == sum(m["contacts"] for m in current["moments"])
    assert [band["name"] for band in pooled["bands"]] == ["unqualified", "intermediate", "qualified"]
    assert 0.5 < pooled["auc"] < 1


def test_a_proposed_file_is_backtested_beside_the_current_one_on_the_same_moments_and_contacts(demo, tmp_path):
    proposed = tmp_path / "proposed.yaml"
    document = yaml.safe_load((demo / "config" / "demo-file.yaml").read_text())
    [top] = [band for band in document["scoring"]["bands"] if band["name"] == "qualified"]
    top["min"] = 20  # a higher bar for the top band
    document.pop("examples", None)
    proposed.write_text(yaml.safe_dump(document))
    code, output = backtest(demo, "--rules", str(proposed), "--json")
    assert code == 0, output
    current, other = json.loads(output)["rules"]
    assert (current["name"], other["name"]) == ("current", "proposed.yaml")
    assert [(m["at"], m["contacts"], m["conversions"]) for m in current["moments"]] == [
        (m["at"], m["contacts"], m["conversions"]) for m in other["moments"]]
    assert current["pooled"]["bands"] != other["pooled"]["bands"]


def test_moments_every_so_often_since_a_date_stop_where_the_stored_conversions_end_and_say_so(demo):
    code, output = backtest(demo, "--every", "30d", "--since", "2025-01-01", "--json")
    assert code == 0, output
    found = json.loads(output)
    assert found["moments"][0] == {"at": "2025-01-01T00:00:00+00:00", "horizon_days": 90}
    assert any("horizon cut" in note for note in found["notes"])
    assert any("left out" in note for note in found["notes"])


def test_a_moment_given_at_a_date_is_scored_at_its_midnight_utc(demo):
    code, output = backtest(demo, "--at", "2024-12-01", "--at", "2024-10-01T12:00", "--json")
    assert code == 0, output
    assert [m["at"] for m in json.loads(output)["moments"]] == ["2024-10-01T12:00:00+00:00",
                                                                 "2024-12-01T00:00:00+00:00"]


@pytest.mark.parametrize(("args", "message"), [
    (("--at", "2025-01-01", "--every", "30d", "--since", "2024-01-01"), "either with --at or with --every"),
    (("--every", "30d",), "--every and --since go together"),
    (("--horizon", "soon",), "expected a duration like"),
    (("--at", "first of may",), "expected a date like 2025-03-01"),
])
def test_moments_asked_for_in_a_way_that_does_not_add_up_are_refused(demo, args, message):
    result = CliRunner().invoke(main, ["backtest", "--config-dir", str(demo / "config"), "--state-dir",
                                       str(demo / "state"), *args])
    assert result.exit_code == 2 and message in result.output


def test_a_store_without_conversions_is_refused_naming_the_tenant_and_what_to_do(synced_acme):
    result = CliRunner().invoke(main, ["backtest"])
    code, output = result.exit_code, result.output
    assert code == 1
    assert "tenant 'acme': the store holds no dated conversion" in output and "pull the CRM's outcomes" in output
