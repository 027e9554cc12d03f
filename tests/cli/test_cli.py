from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from file_tenant import contact, file_tenant, page_view
from support import REPO_CONFIG

from leadpulse.core.cli import render as views
from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV, Services
from leadpulse.core.errors import StoreError
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store


def all_commands(group: click.Group, prefix: str = "leadpulse") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{prefix} {name}")
    return found


@pytest.mark.parametrize(("name", "command"), all_commands(main), ids=lambda item: item if isinstance(item, str) else "")
def test_every_command_has_help_text(name, command):
    assert (command.help or "").strip(), f"{name} has no help text: give its function a docstring"


@pytest.mark.parametrize(("name", "command"), all_commands(main), ids=lambda item: item if isinstance(item, str) else "")
def test_every_option_of_every_command_has_help_text(name, command):
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert [p.name for p in options if not p.help] == []


def folder_options(name: str) -> list[tuple[str, click.Command, click.Parameter]]:
    return [(command_name, command, param) for command_name, command in all_commands(main)
            for param in command.params if param.name == name]


@pytest.mark.parametrize(("name", "default", "envvar"), [("config_dir", Path("config"), CONFIG_DIR_ENV),
                                                  ("state_dir", Path("var"), STATE_DIR_ENV)])
def test_every_command_defaults_its_folders_alike(name, default, envvar):
    found = folder_options(name)
    assert {"leadpulse status", "leadpulse daemon", "leadpulse sync"} <= {n for n, *_ in found}
    assert [(n, p.required, p.default, p.envvar) for n, _, p in found] == [(n, False, default, envvar) for n, *_ in found]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A config folder with one file tenant, and the state folder, passed through the environment."""
    config = tmp_path / "config"
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")]
    file_tenant(config, [contact("c1", "VP Sales"), contact("c2")], views)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(config))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    return config


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_summarises_each_good_file(env):
    result = run("validate")
    assert result.exit_code == 0
    assert "ok acme" in result.output and "bands: cold < 5 <= warm < 10 <= hot" in result.output


def test_validate_reports_a_bad_file_with_its_key_and_fails(env):
    bad = env / "bad.yaml"
    bad.write_text((env / "acme.yaml").read_text().replace("tenant: acme", "tenant: other").replace("points: 4", "points: four"))
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}: scoring.rules[0].points: expected a number, found 'four'" in result.output


@pytest.mark.parametrize("folder", [REPO_CONFIG, REPO_CONFIG / "demo"], ids=["config", "config/demo"])
def test_validate_checks_the_shipped_config_folders_and_runs_their_examples(folder):
    result = run("validate", "--config-dir", str(folder))
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^  examples: \d+ passed$", result.output, re.MULTILINE)) == len(list(folder.glob("*.yaml")))


def test_sync_prints_the_run(env):
    result = run("sync", "--tenant", "acme")
    assert result.exit_code == 0
    assert "succeeded" in result.output


def test_sync_of_an_unknown_tenant_names_the_known_ones(env):
    result = run("sync", "--tenant", "nope")
    assert result.exit_code == 2
    assert "no valid tenant named 'nope'" in result.output and "(tenants: acme)" in result.output


def test_score_prints_the_band_distribution(env):
    run("sync")
    result = run("score")
    assert result.exit_code == 0
    assert "scored 2 contacts" in result.output
    assert "hot" in result.output and "50.0%" in result.output


def test_score_before_any_sync_says_what_to_do(env):
    result = run("score")
    assert result.exit_code == 1
    assert "run `leadpulse sync --tenant acme` first" in result.output


def test_explain_shows_each_rule(env):
    run("sync")
    result = run("explain", "c1")
    assert result.exit_code == 0
    assert "13 hot" in result.output
    assert "senior" in result.output and "pricing" in result.output and "+9" in result.output


def test_explain_of_an_unknown_contact_fails_clearly(env):
    run("sync")
    result = run("explain", "c404")
    assert result.exit_code == 1
    assert "contact 'c404' has no score" in result.output


def test_history_lists_changes(env):
    run("sync")
    result = run("history", "c1")
    assert result.exit_code == 0
    assert "hot" in result.output and "mql" in result.output


def test_compare_counts_band_moves(env, tmp_path):
    run("sync")
    proposal = file_tenant(tmp_path / "proposal", [], [], pricing_points=5)
    result = run("compare", "--rules", str(proposal.source_path))
    assert result.exit_code == 0
    assert "1 of 2 contacts would change band" in result.output


def test_compare_refuses_rules_of_another_tenant(env, tmp_path):
    run("sync")
    proposal = file_tenant(tmp_path / "proposal", [], [], name="beta", pricing_points=5)
    result = run("compare", "--rules", str(proposal.source_path), "--tenant", "acme")
    assert result.exit_code == 1
    assert (f"{proposal.source_path} is a file of tenant 'beta', not of tenant 'acme' ({env / 'acme.yaml'})"
            in result.output)
    assert "would change band" not in result.output


def test_compare_refuses_rules_over_another_fields_map(env, tmp_path):
    run("sync")
    proposal = file_tenant(tmp_path / "proposal", [], [], pricing_points=5)
    proposal.source_path.write_text(proposal.source_path.read_text().replace("title: job_title", "title: headline"))
    result = run("compare", "--rules", str(proposal.source_path))
    assert result.exit_code == 1
    assert f"{proposal.source_path} maps fields title differently from {env / 'acme.yaml'}" in result.output
    assert "would change band" not in result.output


def test_demo_syncs_the_sandbox_twice_and_shows_the_hottest_open_leads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--contacts", "300", "--folder", "kept")
    assert result.exit_code == 0, result.output
    assert "full sync" in result.output and "incremental sync" in result.output
    assert "band distribution" in result.output and "hottest open leads" in result.output
    assert result.output.count("┃ rule") == 1
    assert "customer " not in result.output.split("hottest open leads")[1].split("┃ rule")[0]


def next_steps(output: str) -> list[list[str]]:
    """The commands the demo printed at the end, as argument lists (the program left out)."""
    lines = output.split("Look closer:")[1].strip().splitlines()
    return [line.split()[1:] for line in lines]


def test_the_demo_keeps_what_it_made_for_explain_history_and_status_and_the_next_demo_clears_it(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--contacts", "200", "--folder", "kept")
    assert result.exit_code == 0, result.output
    assert "are in kept (the next demo clears it)" in result.output
    explain, history, status = next_steps(result.output)
    contact = explain[1]
    assert explain[:2] == ["explain", contact] and history[:2] == ["history", contact] and status[0] == "status"
    assert ["--config-dir", "kept/config", "--state-dir", "kept/state"] == explain[2:] == history[2:] == status[1:]
    explained = run(*explain)
    assert explained.exit_code == 0, explained.output
    assert f"({contact}): " in explained.output
    assert run(*history).exit_code == 0
    shown = run(*status)
    assert shown.exit_code == 0 and "demo-hubspot" in shown.output and "succeeded" in shown.output
    portal = json.loads((tmp_path / "kept" / "portal.json").read_text())
    assert portal["properties"][contact]["leadpulse_score"] and portal["tasks"]
    again = run("demo", "--contacts", "200", "--folder", "kept")
    assert again.exit_code == 0, again.output
    with Store.open(tmp_path / "kept" / "state" / "demo-hubspot.sqlite") as store:
        assert [r.id for r in store.runs()] == [2, 1]  # the first demo's runs are gone with its store


def test_the_demo_never_clears_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run("demo", "--from-export", "--folder", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path}: holds files no demo made" in result.output and "--folder" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_from_export_scores_the_sample_without_any_api(tmp_path):
    result = run("demo", "--from-export", "--folder", str(tmp_path / "kept"))
    assert result.exit_code == 0, result.output
    assert "demo-file" in result.output and "band distribution" in result.output
    assert result.output.count("┃ rule") == 1
    explain, _, _ = next_steps(result.output)
    assert run(*explain).exit_code == 0
    assert (tmp_path / "kept" / "state" / "results.csv").exists()


def test_demo_from_export_runs_from_outside_the_checkout_and_writes_nothing_there(tmp_path, monkeypatch):
    from leadpulse.core.cli import demo

    here, kept = tmp_path / "here", tmp_path / "kept"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setattr(demo, "DEMO_FOLDER", kept)
    result = run("demo", "--from-export")
    assert result.exit_code == 0, result.output
    assert "demo-file" in result.output and "hottest open leads" in result.output
    assert f"are in {kept} (the next demo clears it)" in result.output
    assert list(here.iterdir()) == []


def test_sync_of_a_crm_with_no_connector_installed_fails_clearly_without_a_traceback(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    (config / "salesforce.yaml").write_text((REPO_CONFIG / "salesforce.yaml").read_text())
    monkeypatch.setenv("GLOBEX_SF_PASSWORD", "pw-123456")
    monkeypatch.setenv("GLOBEX_SF_TOKEN", "tok-123456")
    monkeypatch.setenv("GLOBEX_SF_CLIENT_SECRET", "secret-123456")
    from leadpulse.core import contract

    installed = contract.entry_points
    monkeypatch.setattr(contract, "entry_points",
                        lambda group: [] if group == "leadpulse.connectors" else installed(group=group))
    result = run("sync", "--tenant", "globex-salesforce", "--config-dir", str(config), "--state-dir", str(tmp_path / "var"))
    assert result.exit_code == 1
    assert "tenant 'globex-salesforce'" in result.output and "crm.kind 'salesforce' has no connector" in result.output
    assert "Traceback" not in result.output and "pw-123456" not in result.output


def table_rows(output: str) -> list[list[str]]:
    """The cells of every row of the tables in `output`, stripped."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


@pytest.fixture
def unset_token_tenant(env, monkeypatch):
    """A HubSpot tenant, first in name order, whose token's environment variable is unset."""
    monkeypatch.delenv("ACME_HUBSPOT_TOKEN", raising=False)
    (env / "0-hubspot.yaml").write_text((REPO_CONFIG / "hubspot.yaml").read_text())
    return "acme-hubspot"


def test_sync_all_reports_a_tenant_whose_secret_is_missing_and_syncs_the_others(env, unset_token_tenant, tmp_path):
    result = run("sync", "--all")
    assert result.exit_code == 1
    assert (tmp_path / "state" / "acme.sqlite").exists()
    rows = table_rows(result.output)
    assert ["acme-hubspot", "-", "not started", *["-"] * (len(RunCounts.names()) + 1)] in rows
    assert [row[:3] for row in rows if row[0] == "acme"] == [["acme", "1", "succeeded"]]
    assert "\nnot started " in result.output and "for tenant 'acme-hubspot'" in result.output
    assert "expected environment variable ACME_HUBSPOT_TOKEN set" in result.output


def test_sync_all_reports_a_tenant_whose_run_lock_is_held_and_syncs_the_others(env, tmp_path):
    file_tenant(env, [contact("c1")], [], name="beta")
    store_path = tmp_path / "state" / "acme.sqlite"
    store_path.parent.mkdir()
    with Store.open(store_path) as store, store.lock("acme"):
        result = run("sync", "--all")
    assert result.exit_code == 1
    rows = table_rows(result.output)
    assert [row[:3] for row in rows] == [["beta", "1", "succeeded"], ["acme", "-", "not started"]]
    assert "\nnot started tenant 'acme': another run holds" in result.output


def test_sync_all_reports_a_run_that_breaks_off_masked_and_syncs_the_others(env, tmp_path):
    from leadpulse.connectors.file import FileConnector

    class Breaking(FileConnector):
        def pull(self, stream, cursor, *, started_at):
            if self.context.tenant == "acme":
                raise ValueError("Invalid header value b'Bearer abcdefgh12345678'")
            return super().pull(stream, cursor, started_at=started_at)

    file_tenant(env, [contact("c1")], [], name="beta")
    result = CliRunner().invoke(main, ["sync", "--all"], obj=Services(connectors=lambda kind: Breaking),
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert [row[:3] for row in table_rows(result.output)] == [["beta", "1", "succeeded"], ["acme", "-", "failed"]]
    assert "\nfailed tenant 'acme': ValueError: Invalid header value b'***'" in result.output
    assert "abcdefgh12345678" not in result.output


def test_sync_of_one_tenant_whose_secret_is_missing_fails_with_its_error_alone(env, unset_token_tenant):
    result = run("sync", "--tenant", "acme-hubspot")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "ACME_HUBSPOT_TOKEN" in result.output
    assert "not started" not in result.output


def test_sync_dry_run_lists_the_pending_writes_and_tasks(env):
    result = run("sync", "--dry-run")
    assert result.exit_code == 0
    assert "acme: dry run, 2 writes and 1 tasks not sent" in result.output
    assert table_rows(result.output)[:3] == [
        ["c1", "lifecycle=mql, lp_band=hot, lp_score=13.0"],
        ["c2", "lifecycle=lead, lp_band=cold, lp_score=3.0"],
        ["c1", "task for owner o1: Call Person c1: 13"],
    ]


def test_validate_shows_an_error_with_brackets_as_written(env):
    bad = env / "bad.yaml"
    bad.write_text((env / "acme.yaml").read_text().replace("tenant: acme", "tenant: Acme Corp"))
    result = run("validate", str(bad))
    assert "expected text matching ^[a-z0-9][a-z0-9_-]*$, found 'Acme Corp'" in result.output


def test_explain_title_keeps_the_axes_in_brackets(env):
    run("sync")
    assert "[fit 4, engagement 9]" in " ".join(run("explain", "c1").output.split())


@pytest.fixture
def bracketed_name(env):
    """The tenant's c1 is called "Ann [/b] Lee": text that reads as a closing markup tag."""
    file_tenant(env, [contact("c1", "VP Sales", "lead") | {"name": "Ann [/b] Lee"}, contact("c2", status="lead")],
                [page_view(f"a{i}", "c1") for i in range(3)])
    return "Ann [/b] Lee"


def test_explain_shows_a_name_that_reads_as_markup_as_written(bracketed_name):
    run("sync")
    result = run("explain", "c1")
    assert result.exit_code == 0
    assert f"{bracketed_name} (c1)" in result.output


def test_hottest_leads_show_a_name_that_reads_as_markup_as_written(bracketed_name, tmp_path):
    from leadpulse.core.config.files import load_tenant

    run("sync")
    tenant = load_tenant(next(tmp_path.glob("config/acme.yaml")))
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        output = render(views.hottest_table(views.open_leads(store, tenant, 5)))
    assert [row[:2] for row in table_rows(output)][:1] == [["c1", bracketed_name]], output


def render(renderable) -> str:
    from io import StringIO

    from rich.console import Console

    text = StringIO()
    Console(width=200, file=text).print(renderable)
    return text.getvalue()


def test_status_shows_a_last_error_that_reads_as_markup_as_written(env, tmp_path):
    from datetime import datetime

    with Store.open(tmp_path / "state" / "acme.sqlite") as store:
        run_id = store.start_run("acme", datetime(2025, 6, 2, tzinfo=UTC))
        store.finish_run(run_id, datetime(2025, 6, 2, tzinfo=UTC), RunOutcome.FAILED, RunCounts(),
                         "bad header [/b] seen")
    result = run("status")
    assert result.exit_code == 0
    assert "bad header [/b] seen" in result.output


def hottest_rows(tmp_path, config: Path) -> list[list[str]]:
    """The rows of the hottest open leads table of the tenant in `config`, synced into tmp_path/state."""
    from leadpulse.core.config.files import load_tenant

    tenant = load_tenant(config / "acme.yaml")
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        return table_rows(render(views.hottest_table(views.open_leads(store, tenant, 5))))


def test_hottest_leads_show_the_status_leadpulse_set_else_the_crms(env, tmp_path):
    file_tenant(env, [contact("c1", "VP Sales", "lead"), contact("c2", status="opportunity")],
                [page_view(f"a{i}", "c1") for i in range(3)])
    run("sync", "--dry-run")
    assert [(row[0], row[5]) for row in hottest_rows(tmp_path, env)] == [("c1", "mql"), ("c2", "opportunity")]


def test_hottest_leads_list_contacts_without_a_status_when_the_tenant_maps_no_customer(env, tmp_path):
    run("sync")
    assert [row[0] for row in hottest_rows(tmp_path, env)] == ["c1", "c2"]


def test_the_demos_say_what_to_do_when_their_files_are_not_here(tmp_path, monkeypatch):
    from leadpulse.core.cli import demo

    for name, crm in demo.DEMO_CRMS.items():
        monkeypatch.setitem(demo.DEMO_CRMS, name, replace(crm, tenant_file=tmp_path / "gone" / crm.tenant_file.name))
    monkeypatch.setattr(demo, "EXPORT_TENANT_FILE", tmp_path / "gone" / "demo-file.yaml")
    for args in (["demo"], ["demo", "--crm", "salesforce"], ["demo", "--from-export"]):
        result = run(*args)
        assert result.exit_code == 1
        assert f"Error: {tmp_path / 'gone'}" in result.output and "run the demo from a checkout" in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [("explain", "c1"), ("history", "c1"), ("score",)])
def test_an_offline_command_on_a_damaged_store_fails_with_a_clean_error(env, tmp_path, command):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "acme.sqlite").write_bytes(b"not a database\n" * 100)
    result = CliRunner().invoke(main, list(command))
    assert result.exit_code == 1 and not isinstance(result.exception, StoreError), result.exception
    assert result.output.startswith("Error: ") and "acme.sqlite is damaged" in result.output


def test_hottest_leads_of_a_tenant_without_a_lifecycle_section_list_every_contact(env, tmp_path):
    from leadpulse.core.config.files import load_tenant

    run("sync")
    tenant = load_tenant(env / "acme.yaml")
    plain = tenant.model_copy(update={"scoring": tenant.scoring.model_copy(update={"lifecycle": None})})
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        leads = views.open_leads(store, plain, 5)
    assert [lead.score.contact_id for lead in leads] == ["c1", "c2"]


FOLDER_COMMANDS = [("validate",), ("sync", "--all"), ("sync",), ("score",), ("explain", "c1"), ("history", "c1"),
                   ("status",), ("deploy", "k8s", "--out", "out-never-written")]


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_refuses_a_config_dir_that_does_not_exist(tmp_path, command):
    result = CliRunner().invoke(main, [*command, "--config-dir", str(tmp_path / "nothing")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{tmp_path / 'nothing'}: (folder): expected a folder of tenant files" in result.output


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_refuses_a_config_dir_without_tenant_files(tmp_path, command):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, [*command, "--config-dir", str(tmp_path / "empty")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"no tenant files (*.yaml, *.yml) in {tmp_path / 'empty'}" in result.output


def test_sync_takes_a_log_level(env):
    import logging

    before = logging.getLogger().level
    try:
        assert run("sync", "--log-level", "debug").exit_code == 0
        assert logging.getLogger().level == logging.DEBUG
    finally:
        logging.getLogger().setLevel(before)


@pytest.fixture
def no_connectors(monkeypatch):
    """No connector installed (the settings models stay, so tenant files still validate)."""
    from leadpulse.core import contract

    installed = contract.entry_points
    monkeypatch.setattr(contract, "entry_points",
                        lambda group: [] if group == "leadpulse.connectors" else installed(group=group))


@pytest.mark.parametrize("command", [("validate",), ("deploy", "k8s", "--out")], ids=lambda c: c[0])
def test_validate_and_deploy_warn_of_a_tenant_whose_crm_has_no_connector_installed(tmp_path, no_connectors, command):
    config = tmp_path / "config"
    config.mkdir()
    (config / "salesforce.yaml").write_text((REPO_CONFIG / "salesforce.yaml").read_text())
    out = [str(tmp_path / "out")] if command[-1] == "--out" else []  # written where the test cleans up
    result = CliRunner().invoke(main, [*command, *out, "--config-dir", str(config)])
    assert result.exit_code == 0, result.output
    assert (f"warning: tenant 'globex-salesforce' ({config / 'salesforce.yaml'}): crm.kind 'salesforce' has no "
            "connector installed here") in result.output


def test_validate_refuses_a_tenant_file_that_is_not_utf8_without_a_traceback(env):
    (env / "latin.yaml").write_bytes(b"tenant: latin\ndescription: caf\xe9\n")
    result = run("validate")
    assert result.exit_code == 1 and "ok acme" in result.output
    assert f"error {env / 'latin.yaml'}: (file): expected a UTF-8 text file" in result.output


def damage(store_path: Path, table: str = "contacts") -> None:
    """Overwrite the head of `table`'s root page, as a bad disk sector would."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(store_path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        [(root,)] = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchall()
        [(size,)] = db.execute("PRAGMA page_size").fetchall()
    with open(store_path, "r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\xff" * 64)


@pytest.fixture
def damaged_store(env, tmp_path) -> Path:
    assert run("sync").exit_code == 0
    path = tmp_path / "state" / "acme.sqlite"
    damage(path)
    return path


def test_a_sync_on_a_damaged_store_stops_before_pulling_anything_naming_the_file_and_the_way_out(damaged_store):
    from leadpulse.connectors.file import FileConnector

    pulled = []

    class Watched(FileConnector):
        def pull(self, stream, cursor, *, started_at):
            pulled.append(stream)
            return super().pull(stream, cursor, started_at=started_at)

    result = CliRunner().invoke(main, ["sync"], obj=Services(connectors=lambda kind: Watched))
    assert result.exit_code == 1 and "Traceback" not in result.output and pulled == []
    assert f"{damaged_store} is damaged" in result.output
    assert "`leadpulse check`" in result.output and "`leadpulse sync --full`" in result.output


@pytest.mark.parametrize("command", [("score",), ("explain", "c1"), ("history", "c1"), ("check",),
                                     ("compare", "--rules", "{rules}")], ids=lambda c: c[0])
def test_every_offline_command_on_a_damaged_page_names_the_store_without_a_traceback(damaged_store, env, command):
    args = [arg.format(rules=env / "acme.yaml") for arg in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and f"{damaged_store} is damaged" in result.output, result.output


def test_status_names_a_store_whose_runs_sit_on_a_damaged_page_in_its_row(env, tmp_path):
    assert run("sync").exit_code == 0
    damage(tmp_path / "state" / "acme.sqlite", "runs")
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1 and "store unreadable" in result.output
    assert f"error: tenant 'acme': {tmp_path / 'state' / 'acme.sqlite'} is damaged" in result.output


def test_check_says_a_sound_store_is_sound(env, tmp_path):
    assert run("sync").exit_code == 0
    result = run("check")
    assert result.exit_code == 0 and "acme.sqlite is sound" in result.output


def test_a_partial_sync_exits_3_and_prints_the_first_skipped_records_with_their_place(env):
    with open(env / "activities.jsonl", "a") as handle:
        handle.write('{"id": "x1", "contact_id": "c1", "kind": "page_view", "occurred_at": "soon"}\n')
    result = run("sync")
    assert result.exit_code == 3, result.output
    rows = table_rows(result.output)
    assert rows[0][:5] == ["acme", "1", "partial", "6", "1"]
    assert ("acme skipped activities record x1: activities.jsonl:5: occurred_at: expected an ISO 8601 time, found "
            'text "soon"') in result.output


def test_writes_the_crm_refuses_past_the_tolerance_make_the_run_partial_and_are_listed_by_status_parked(env):
    from leadpulse.connectors.file import FileConnector
    from leadpulse.core.contract import WriteResult

    class Refusing(FileConnector):
        def write_properties(self, writes):
            return [WriteResult(w.key, False, error="INVALID_OPTION lp_band") for w in writes]

    refusing = Services(connectors=lambda kind: Refusing)
    for _ in range(5):  # the outbox parks a row after five refusals
        result = CliRunner().invoke(main, ["sync"], obj=refusing, catch_exceptions=False)
        assert result.exit_code == 3, result.output
    assert "acme refused lp-acme-c1-props for contact c1: INVALID_OPTION lp_band" in result.output
    status = run("status", "--parked")
    assert status.exit_code == 0
    [row] = [r for r in table_rows(status.output) if r[0] == "acme"]
    assert row[3:8] == ["0", "0", "0", "0", "2"]  # pulled, skipped, written, tasks, refused of the last sync
    assert "acme: 2 parked" in status.output and "INVALID_OPTION lp_band" in status.output
    assert "lp-acme-c2-props" in status.output
