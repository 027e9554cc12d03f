"""`leadpulse report` on the sample export the demo scores: every section on the terminal, one HTML page that
needs nothing but itself, the figures' own sums, the hand-off's waits, and a store without outcomes."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import invoke

from leadpulse.core.cli.report import inline_svg
from leadpulse.core.cli.tenants import load_named
from leadpulse.core.runtime.report import Report, gather_report
from leadpulse.core.store.store import Store

SECTIONS = ("Bands", "Scores", "Conversion by band", "Cumulative gains", "Rules", "Status moves per week",
            "Hand-off")



def report(demo: Path, *args: str) -> tuple[int, str]:
    return invoke("report", "--config-dir", str(demo / "config"), "--state-dir", str(demo / "state"), *args)


def gathered(demo: Path) -> Report:
    tenant = load_named(demo / "config", None)
    with Store.reading(demo / "state" / f"{tenant.name}.sqlite") as store:
        return gather_report(store, tenant)


def test_the_terminal_report_shows_every_section(demo):
    code, output = report(demo)
    assert code == 0, output
    for heading in SECTIONS:
        assert heading in output
    for title in ("bands now (stored scores)", "band shares at the backtest's moments", "stored totals",
                  "conversion within the horizon by band, 12 moments pooled", "best scored contacts",
                  "rules by points contributed", "rules by how conversion differs", "none -> mql",
                  "follow-up tasks done"):
        assert title in output
    assert "left out" not in output
    assert "fields are as last pulled" in output


def test_the_page_has_inline_svg_charts_and_nothing_to_fetch(demo, tmp_path):
    page = tmp_path / "report.html"
    code, output = report(demo, "--html", str(page))
    assert code == 0, output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 7
    assert "http" not in text.lower()
    for fetching in ("<script", "<link", "<img", "<iframe", "<object", "src=", "@import", "url(http"):
        assert fetching not in text.lower()
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text and "xmlns" not in text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # the charts' ids do not collide in one page


def test_the_page_and_the_terminal_show_the_same_numbers(demo, tmp_path):
    figures = gathered(demo)
    qualified = figures.backtested.by_band[-1]
    shown = (f"{qualified.rate:.1%}", f"{figures.bands_now[0].share:.1%}", figures.rules[0].rule_id,
             f"{figures.backtested.gains_at(0.1):.1%}")
    page = tmp_path / "report.html"
    code, output = report(demo, "--html", str(page))
    assert code == 0, output
    _, terminal = report(demo)
    for figure in shown:
        assert figure in terminal and figure in page.read_text()


def test_each_rules_contact_moments_split_into_fired_and_not_and_add_up_to_the_backtest(demo):
    figures = gathered(demo)
    tested = figures.backtested
    for rule in figures.rules:
        assert rule.fired + rule.unfired == tested.contact_moments
        converted = rule.fired_rate * rule.fired + rule.unfired_rate * rule.unfired
        assert round(converted) == tested.conversions
    assert [rule.points for rule in figures.rules] == sorted((rule.points for rule in figures.rules), reverse=True)
    assert sum(b.contacts for b in figures.histogram) == sum(b.contacts for b in figures.bands_now) == 400


def test_the_gains_curve_climbs_from_nothing_to_everything_above_the_diagonal(demo):
    gains = gathered(demo).backtested.gains
    assert (gains[0].contact_share, gains[0].conversion_share) == (0, 0)
    assert gains[-1].contact_share == pytest.approx(1) and gains[-1].conversion_share == pytest.approx(1)
    shares = [p.conversion_share for p in gains]
    assert shares == sorted(shares)
    assert gathered(demo).backtested.gains_at(0.2) > 0.2


def test_the_hand_off_waits_from_the_run_that_queued_the_task_to_the_next_call(demo, tmp_path):
    state = tmp_path / "state"
    shutil.copytree(demo / "state", state)
    tenant = load_named(demo / "config", None)
    with sqlite3.connect(state / f"{tenant.name}.sqlite") as db:
        contact, started = db.execute(
            "SELECT o.contact_id, r.started_at FROM outbox o JOIN runs r ON r.id = o.created_run "
            "WHERE o.kind = 'task' ORDER BY o.contact_id LIMIT 1").fetchone()
        called = datetime.fromisoformat(started) + timedelta(hours=5)
        db.execute("INSERT INTO activities (contact_id, id, kind, occurred_at) VALUES (?, 'later-call', 'call', ?)",
                   (contact, called.isoformat(timespec="milliseconds")))
        db.execute("INSERT INTO activities (contact_id, id, kind, occurred_at) VALUES (?, 'later-view', "
                   "'page_view', ?)", (contact, (called - timedelta(hours=4)).isoformat(timespec="milliseconds")))
    with Store.reading(state / f"{tenant.name}.sqlite") as store:
        handed = gather_report(store, tenant).hand_off
    assert (handed.tasks, handed.followed_up, handed.waiting) == (65, 1, 64)
    assert handed.median_wait == handed.p90_wait == timedelta(hours=5)
    code, output = invoke("report", "--config-dir", str(demo / "config"), "--state-dir", str(state))
    assert code == 0 and "5.0 h" in output


def test_a_store_without_outcomes_reports_what_it_can_and_says_why_the_rest_is_missing(synced_acme, tmp_path):
    code, output = invoke("report")
    assert code == 0, output
    for heading in SECTIONS:
        assert heading in output
    assert "left out: the store holds no dated conversion" in output
    assert "best scored contacts" not in output and "rules by how conversion differs" not in output
    assert "rules by points contributed" in output and "stored totals" in output
    page = tmp_path / "report.html"
    code, output = invoke("report", "--html", str(page))
    assert code == 0, output
    text = page.read_text()
    assert "left out: the store holds no dated conversion" in text and "<svg" in text and "http" not in text


def test_inline_svg_drops_the_prolog_the_metadata_and_the_namespaces_and_prefixes_ids():
    document = ('<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/x.dtd">\n'
                '<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="10" xmlns="http://www.w3.org/2000/svg">'
                '<metadata><rdf:RDF xmlns:dc="http://purl.org/dc/elements/1.1/"/></metadata>'
                '<defs><path id="m1" d="M0 0"/></defs><use xlink:href="#m1"/><g clip-path="url(#p2)"/></svg>')
    assert inline_svg(document, "c0") == ('<svg width="10"><defs><path id="c0-m1" d="M0 0"/></defs>'
                                          '<use xlink:href="#c0-m1"/><g clip-path="url(#c0-p2)"/></svg>')
    with pytest.raises(ValueError, match="still names an address"):
        inline_svg('<svg><a href="https://example.com"/></svg>', "c1")


def test_the_sync_command_does_not_import_matplotlib():
    code = "import sys, leadpulse.core.cli.main; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
