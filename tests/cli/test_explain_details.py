"""`leadpulse explain` tells each row's story: what a cap left out, what decay took, and the value that matched;
and says so when no rule matched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner
from file_tenant import TENANT_YAML, contact, page_view, write_exports

from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV

RULES = """\
    - id: form
      label: form filled
      activity: form_submit
      half_life_days: 45
      points: 5
"""


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def synced(tmp_path, monkeypatch):
    config = tmp_path / "config"
    now = datetime.now(UTC)
    ago = lambda days: (now - timedelta(days=days)).isoformat()  # noqa: E731
    views = [page_view(f"p{i}", "c1", url=f"/pricing/plan-{i}", when=ago(1 + i)) for i in range(4)]
    form = {"id": "f1", "contact_id": "c1", "kind": "form_submit", "occurred_at": ago(90)}
    write_exports(config, [contact("c1", "VP Sales"), contact("c2")], [*views, form])
    text = TENANT_YAML.format(name="acme", pricing_points=3).replace(
        "      points: 3\n  bands:", f"      points: 3\n      max_occurrences: 2\n{RULES}  bands:")
    (config / "acme.yaml").write_text(text)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(config))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    assert run("sync").exit_code == 0


def test_explain_shows_a_capped_a_decayed_and_a_matched_value_row(synced):
    result = run("explain", "c1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    pricing = next(line for line in lines if "viewed pricing" in line)
    assert "+6" in pricing and "2 of 4" in pricing and "2 of 4 counted" in pricing and "/pricing/plan-0" in pricing
    form = next(line for line in lines if "form filled" in line)
    assert "+1.25" in form and "of 5, last 90 days ago, half-life 45 days" in form
    senior = next(line for line in lines if line.lstrip("│ ").startswith("senior"))
    assert "VP Sales" in senior
    assert "lifecycle status in the CRM: (none); last set by leadpulse: mql; the transition to mql holds" in \
        " ".join(result.output.split())


def test_explain_of_a_contact_no_rule_matched_says_so(synced):
    result = run("explain", "c2")
    assert result.exit_code == 0, result.output
    assert "no rule matched this contact: its score is 0" in result.output
    assert "the transition to lead holds; next, mql needs band hot or above (now cold)" in " ".join(result.output.split())
