"""``leadpulse validate`` runs the examples of every tenant file: the shipped files carry examples at their band
boundaries (that they pass is checked with the folders, in test_cli.py), and a rule broken in a copy of one is
reported word for word, naming the file, the example and each difference."""

from __future__ import annotations

from itertools import pairwise

import click
import pytest
from click.testing import CliRunner
from support import REPO_CONFIG

from leadpulse.core.cli.main import main
from leadpulse.core.config.files import load_tenant

SHIPPED = sorted([*REPO_CONFIG.glob("*.yaml"), *(REPO_CONFIG / "demo").glob("*.yaml")])


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.relative_to(REPO_CONFIG).as_posix())
def test_every_shipped_tenant_file_has_an_example_at_each_band_boundary_and_one_just_beside_it(path):
    tenant = load_tenant(path)
    expected = [(case.expect.score, case.expect.band) for case in tenant.examples.cases]
    for below, step in pairwise(tenant.scoring.bands):
        bound, inclusive = step.lower, step.above is None
        assert bound is not None
        # exactly at the bound: in the band when it starts there (min), below it when it starts above it (above)
        assert (bound, step.name if inclusive else below.name) in expected, f"no example scores exactly {bound:g}"
        beside = [score for score, band in expected if score is not None and (
            (band == below.name and bound - 1 <= score < bound) if inclusive else
            (band == step.name and bound < score <= bound + 1))]
        assert beside, f"no example scores just {'below' if inclusive else 'above'} {bound:g}"


def test_a_rule_broken_in_a_copy_of_a_shipped_file_fails_its_examples_word_for_word(tmp_path):
    copy = tmp_path / "hubspot.yaml"
    text = (REPO_CONFIG / "hubspot.yaml").read_text(encoding="utf-8")
    decision_maker = 'founder)\\\\b"}\n      points: 4\n'
    assert text.count(decision_maker) == 1
    copy.write_text(text.replace(decision_maker, decision_maker.replace("points: 4", "points: 3")), encoding="utf-8")
    result = run("validate", str(copy))
    assert result.exit_code == 1
    assert f"failed acme-hubspot ({copy})" in result.output and "  examples: 2 passed, 5 failed\n" in result.output
    director = [line for line in result.output.splitlines() if '"director exactly at qualified"' in line]
    assert director == [
        f'error {copy}: example "director exactly at qualified": expected score 10, got 9 (fit 9, engagement 0)',
        f'error {copy}: example "director exactly at qualified": expected band qualified, got intermediate (score 9; '
        "the band qualified starts at 10)",
        f'error {copy}: example "director exactly at qualified": expected status mql, got lead (score 9, band '
        "intermediate, grade A, quadrant nurture; the contact's status is 'subscriber')",
    ]


def test_one_tenants_failing_examples_leave_the_others_ok(tmp_path):
    (tmp_path / "good.yaml").write_text((REPO_CONFIG / "pipedrive.yaml").read_text(encoding="utf-8"))
    broken = (REPO_CONFIG / "salesforce.yaml").read_text(encoding="utf-8").replace(
        "{name: qualified, min: 10}", "{name: qualified, min: 11}")
    (tmp_path / "broken.yaml").write_text(broken)
    result = run("validate", "--config-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"ok initech-pipedrive ({tmp_path / 'good.yaml'})" in result.output
    assert f"failed globex-salesforce ({tmp_path / 'broken.yaml'})" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error ")]
    assert errors and all(line.startswith(f"error {tmp_path / 'broken.yaml'}: example ") for line in errors)


def test_a_tenant_file_without_examples_validates_and_says_so(tmp_path):
    text = (REPO_CONFIG / "pipedrive.yaml").read_text(encoding="utf-8")
    path = tmp_path / "plain.yaml"
    path.write_text(text[:text.index("\nexamples:")] + "\n", encoding="utf-8")
    result = run("validate", str(path))
    assert result.exit_code == 0 and "  examples: none\n" in result.output
