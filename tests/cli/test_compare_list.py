"""``leadpulse compare --rules``: band moves paired by position, lifecycle status moves beside them, and ``--list`` of
the contacts that move."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from leadpulse.core.cli.main import main


@pytest.fixture
def config(synced_acme: Path) -> Path:
    return synced_acme


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def proposal(config: Path, *edits: tuple[str, str]) -> Path:
    """acme.yaml with `edits` (old, new) made, written outside the config folder."""
    text = (config / "acme.yaml").read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = config.parent / "proposal" / "acme.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def rows(output: str, title: str) -> list[list[str]]:
    """The body rows of the table titled `title` in `output`, as lists of cell texts."""
    lines = output.split(title, 1)[1].splitlines()
    body = lines[lines.index(next(line for line in lines if line.startswith("┡"))) + 1:]
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in body[:body.index(
        next(line for line in body if line.startswith("└")))]]


RENAMED = [("{name: cold}", "{name: frozen}"), ("{name: warm, min: 5}", "{name: tepid, min: 5}"),
           ("{name: hot, min: 10}", "{name: fire, min: 10}"), ("min_band: hot", "min_band: fire"),
           ("on_bands: [hot]", "on_bands: [fire]")]


def test_renamed_bands_are_paired_by_position_and_move_nobody(config):
    result = run("compare", "--rules", str(proposal(config, *RENAMED)), "--list")
    assert result.exit_code == 0, result.output
    assert ("note bands paired by position (both rule sets have 3): cold is frozen, warm is tepid, hot is fire; a "
            "contact in a band now and in its pair under the proposed rules has not moved") in result.output
    assert rows(result.output, "band moves") == [["cold", "1", "0", "0"], ["warm", "0", "0", "0"], ["hot", "0", "0", "1"]]
    assert "contacts that would move" not in result.output
    assert result.output.endswith("0 of 2 contacts would change band, 0 would change lifecycle status\n")


def test_a_contact_whose_status_would_move_is_listed_with_it_though_its_band_stays(config):
    rules = proposal(config, ("{to: mql, min_band: hot}", "{to: mql, min_total: 3}"))
    result = run("compare", "--rules", str(rules), "--list")
    assert result.exit_code == 0, result.output
    assert rows(result.output, "contacts that would move (1), each value as now -> proposed:") == [
        ["c2", "Person c2", "cold", "3", "lead -> mql"]]
    assert result.output.endswith("0 of 2 contacts would change band, 1 would change lifecycle status\n")


def test_list_shows_a_band_move_with_its_score_and_status(config):
    rules = proposal(config, ("points: 3", "points: 5"))
    result = run("compare", "--rules", str(rules), "--list")
    assert rows(result.output, "contacts that would move (1)") == [["c2", "Person c2", "cold -> warm", "3 -> 5", "lead"]]
    assert result.output.endswith("1 of 2 contacts would change band, 0 would change lifecycle status\n")


def test_a_renamed_band_that_a_contact_also_leaves_is_a_move_named_in_both_ladders(config):
    rules = proposal(config, *RENAMED, ("points: 3", "points: 5"))
    result = run("compare", "--rules", str(rules), "--list")
    assert rows(result.output, "contacts that would move (1)") == [["c2", "Person c2", "cold -> tepid", "3 -> 5", "lead"]]


def test_without_list_no_contact_is_listed(config):
    result = run("compare", "--rules", str(proposal(config, ("points: 3", "points: 5"))))
    assert result.exit_code == 0
    assert "contacts that would move" not in result.output and "1 of 2 contacts would change band" in result.output


def test_ladders_of_different_lengths_pair_bands_by_name(config):
    rules = proposal(config, ("{name: hot, min: 10}", "{name: hot, min: 10}\n    - {name: hotter, min: 12}"))
    result = run("compare", "--rules", str(rules), "--list")
    assert ("note the rule sets have 3 and 4 bands, so bands are paired by name (cold, warm, hot); a contact in any "
            "other band has moved") in result.output
    assert rows(result.output, "contacts that would move (1)") == [["c1", "Person c1", "hot -> hotter", "13", "mql"]]
