"""``leadpulse validate`` warns of engagement rules one activity can count for together, and still passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from file_tenant import contact, file_tenant, page_view

from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV

BLOG_RULE = """\
    - id: blog
      label: read the blog
      activity: page_view
      where: {field: url, contains: /blog}
      points: 1
  bands:"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tenant acme with its pricing rule (``contains: /pricing``) and a blog rule beside it."""
    folder = tmp_path / "config"
    views = [page_view("a1", "c1", "/blog/intro"), page_view("a2", "c1", "/blog/pricing-tips")]
    tenant = file_tenant(folder, [contact("c1")], views)
    tenant.source_path.write_text(tenant.source_path.read_text().replace("  bands:", BLOG_RULE, 1))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    return folder


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def warning(config: Path, example: str, source: str) -> str:
    return (f"warning tenant 'acme' ({config / 'acme.yaml'}): rules 'pricing' and 'blog' can both count one page_view: "
            f"url {example!r} ({source}) matches both; if an activity should count for one of them only, exclude the "
            "other in one rule's where, e.g. in 'pricing': where: {all: [{field: url, contains: /pricing}, {not: "
            "{field: url, contains: /blog}}]}\n")


def test_validate_warns_with_a_value_made_from_the_rules_before_any_sync_and_passes(config):
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert warning(config, "/pricing/blog", "made from the two rules' values") in result.output


def test_validate_warns_with_a_stored_value_once_the_tenant_has_a_store(config):
    assert run("sync").exit_code == 0
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert warning(config, "/blog/pricing-tips", "seen on a stored activity") in result.output


def test_validate_of_named_files_warns_too(config):
    result = run("validate", str(config / "acme.yaml"))
    assert result.exit_code == 0 and "rules 'pricing' and 'blog' can both count one page_view" in result.output


def test_validate_says_nothing_of_rules_that_exclude_each_other(config):
    path = config / "acme.yaml"
    path.write_text(path.read_text().replace("where: {field: url, contains: /pricing}", "where: {all: [{field: url, "
                                             "contains: /pricing}, {not: {field: url, contains: /blog}}]}"))
    result = run("validate")
    assert result.exit_code == 0 and "warning" not in result.output
