"""Two files of one config folder naming the same tenant: every command refuses that tenant, naming both files, and
the other tenants go on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from file_tenant import contact, file_tenant, page_view

from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """acme.yaml, a copy of it kept as acme-v1.yaml (other points, same tenant name), and tenant beta."""
    folder = tmp_path / "config"
    tenant = file_tenant(folder, [contact("c1", "VP Sales")], [page_view("a1", "c1")])
    (folder / "acme-v1.yaml").write_text(tenant.source_path.read_text().replace("points: 3", "points: 30"))
    file_tenant(folder, [contact("c1", "VP Sales")], [page_view("a1", "c1")], name="beta")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    return folder


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def refusal(folder: Path) -> str:
    return (f"tenant 'acme' is named by 2 files in {folder}, {folder / 'acme-v1.yaml'} and {folder / 'acme.yaml'}: "
            "none of them is loaded, since any could pass for the tenant's live rules; rename the tenant in one of "
            f"them (its tenant: key), or move the copy out of {folder}")


@pytest.mark.parametrize("command", [
    ("validate",), ("sync", "--tenant", "acme"), ("sync", "--all"), ("score", "--tenant", "acme"),
    ("explain", "c1", "--tenant", "acme"), ("history", "c1", "--tenant", "acme"), ("check", "--tenant", "acme"),
    ("compare", "--tenant", "acme", "--rules", "{config}/acme.yaml"), ("status",),
    ("deploy", "k8s", "--out", "{config}/../k8s"),
], ids=lambda command: " ".join(command[:2]))
def test_every_command_refuses_a_tenant_named_by_two_files_naming_both(config, command):
    result = run(*(arg.format(config=config) for arg in command))
    assert result.exit_code != 0
    assert refusal(config) in result.output


def test_a_command_without_tenant_names_the_two_files_when_the_doubled_tenant_is_the_only_one(config):
    (config / "beta.yaml").unlink()
    result = run("score")
    assert result.exit_code == 1
    assert result.output == f"Error: {refusal(config)}\n"


def test_the_other_tenant_of_the_folder_still_syncs(config):
    assert run("sync", "--tenant", "beta").exit_code == 0
    everyone = run("sync", "--all")
    assert everyone.exit_code == 1
    assert "beta" in everyone.output and refusal(config) in everyone.output
    assert not (config.parent / "state" / "acme.sqlite").exists()


def test_validate_of_two_named_files_of_one_folder_giving_one_tenant_refuses_both(config, tmp_path):
    result = run("validate", str(config / "acme.yaml"), str(config / "acme-v1.yaml"), str(config / "beta.yaml"))
    assert result.exit_code == 1
    assert refusal(config) in " ".join(result.output.split())
    assert "ok beta" in result.output and "ok acme" not in result.output
    elsewhere = tmp_path / "proposal"
    elsewhere.mkdir()
    (elsewhere / "acme.yaml").write_text((config / "acme-v1.yaml").read_text())
    (elsewhere / "contacts.csv").write_text((config / "contacts.csv").read_text())
    (elsewhere / "activities.jsonl").write_text((config / "activities.jsonl").read_text())
    side_by_side = run("validate", str(config / "acme.yaml"), str(elsewhere / "acme.yaml"))
    assert side_by_side.exit_code == 0, side_by_side.output  # two versions of one tenant in two folders
