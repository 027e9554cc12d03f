"""Tenant files: the shipped examples load, and malformed files are refused with exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO_CONFIG

from leadpulse.connectors.settings import FileSettings, HubSpotSettings
from leadpulse.core.config.files import load_config_dir, load_tenant
from leadpulse.core.engine.rules import FitRule, Leaf
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import ConfigError, ConfigErrors, DuplicateTenant

MINIMAL = """\
tenant: acme
crm:
  kind: hubspot
  connection:
    tier: starter
  secrets:
    access_token: {env: ACME_TOKEN}
fields:
  title: jobtitle
  country: country
scoring:
  rules:
    - id: vp
      when: {field: title, contains: vp}
      points: 5
    - id: pricing
      activity: page_view
      points: 2
  bands:
    - {name: unqualified}
    - {name: intermediate, min: 6}
    - {name: qualified, min: 10}
  quadrant: {fit: 5, engagement: 5}
"""


def write(folder: Path, text: str, name: str = "acme.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(folder: Path, text: str) -> str:
    path = write(folder, text)
    with pytest.raises(ConfigError) as caught:
        load_tenant(path)
    return str(caught.value).replace(str(path), "FILE")


def edited(old: str, new: str) -> str:
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new)


# ---------------------------------------------------------------- what loads


@pytest.mark.parametrize("name", ["hubspot.yaml", "salesforce.yaml", "pipedrive.yaml"])
def test_each_shipped_example_loads_and_compiles(name: str) -> None:
    tenant = load_tenant(REPO_CONFIG / name)
    assert Engine(tenant.scoring).band_names == ["unqualified", "intermediate", "qualified"]
    assert tenant.summary().startswith(f"{tenant.name} ({REPO_CONFIG / name})")


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    tenant = load_tenant(write(tmp_path, MINIMAL))
    assert tenant.name == "acme"
    assert isinstance(tenant.crm.connection, HubSpotSettings)
    assert tenant.crm.connection.base_url == "https://api.hubapi.com"
    assert tenant.schedule.describe() == "every 15m"
    assert list(tenant.scoring.axes) == ["fit", "engagement"]
    assert tenant.source_path == tmp_path / "acme.yaml"


def test_summary_says_what_the_file_sets_up(tmp_path: Path) -> None:
    summary = load_tenant(write(tmp_path, MINIMAL)).summary()
    assert "crm: hubspot; secrets: access_token from $ACME_TOKEN" in summary
    assert "bands: unqualified < 6 <= intermediate < 10 <= qualified" in summary
    assert "tasks: off" in summary


def test_yes_and_no_stay_text(tmp_path: Path) -> None:
    text = edited("when: {field: title, contains: vp}", "when: {field: country, in: [SE, NO]}")
    tenant = load_tenant(write(tmp_path, text))
    rule = tenant.scoring.rules[0]
    assert isinstance(rule, FitRule) and isinstance(rule.when, Leaf)
    assert rule.when.in_ == ("SE", "NO")


def test_store_path_is_relative_to_the_tenant_file(tmp_path: Path) -> None:
    assert load_tenant(write(tmp_path, MINIMAL)).store_path(Path("/state")) == Path("/state/acme.sqlite")
    tenant = load_tenant(write(tmp_path, MINIMAL + "store: data/acme.sqlite\n"))
    assert tenant.store_path(Path("/state")) == tmp_path / "data" / "acme.sqlite"


def test_file_connector_paths_are_relative_to_the_tenant_file(tmp_path: Path) -> None:
    text = edited("  kind: hubspot\n  connection:\n    tier: starter\n  secrets:\n    access_token: {env: ACME_TOKEN}\n",
                  "  kind: file\n  connection:\n    contacts: data/contacts.csv\n    results: out/results.jsonl\n")
    settings = load_tenant(write(tmp_path, text)).crm.connection
    assert isinstance(settings, FileSettings)
    assert settings.contacts == tmp_path / "data" / "contacts.csv"


def test_properties_to_read_include_raw_names_rules_use(tmp_path: Path) -> None:
    text = edited("when: {field: title, contains: vp}", "when: {field: raw.hs_persona, equals: persona_1}")
    assert load_tenant(write(tmp_path, text)).properties_to_read() == ("jobtitle", "country", "hs_persona")


# ---------------------------------------------------------------- secrets


def test_secrets_resolve_from_the_environment(tmp_path: Path) -> None:
    tenant = load_tenant(write(tmp_path, MINIMAL))
    assert tenant.resolve_secrets({"ACME_TOKEN": "pat-123"}) == {"access_token": "pat-123"}


def test_a_missing_environment_variable_names_tenant_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_tenant(path).resolve_secrets({})
    assert str(caught.value) == (
        f"{path}: crm.secrets.access_token.env: expected environment variable ACME_TOKEN set for tenant 'acme' "
        "(export it, or use {file: PATH}), found it unset"
    )


def test_an_environment_secret_loses_the_newline_a_secret_file_left_on_it(tmp_path: Path) -> None:
    tenant = load_tenant(write(tmp_path, MINIMAL))
    assert tenant.resolve_secrets({"ACME_TOKEN": " pat-123\n"}) == {"access_token": "pat-123"}


def test_a_secret_with_a_line_break_inside_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_tenant(path).resolve_secrets({"ACME_TOKEN": "pat-123\npat-456"})
    assert str(caught.value) == (
        f"{path}: crm.secrets.access_token.env: expected a one-line secret in environment variable ACME_TOKEN for "
        "tenant 'acme' (set it again without line breaks), found a control character at position 8"
    )


def test_secrets_resolve_from_a_file_beside_the_tenant_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pat-from-file\n")
    tenant = load_tenant(write(tmp_path, edited("{env: ACME_TOKEN}", "{file: token}")))
    assert tenant.resolve_secrets({}) == {"access_token": "pat-from-file"}


def test_a_literal_token_is_refused_without_repeating_it(tmp_path: Path) -> None:
    message = refusal(tmp_path, edited("{env: ACME_TOKEN}", "pat-na1-0123456789"))
    assert message == (
        "FILE: crm.secrets.access_token: expected a reference {env: NAME} or {file: PATH} "
        "(secrets never live in the tenant file), found a literal value"
    )
    assert "0123456789" not in message


# ---------------------------------------------------------------- malformed files, exact messages


MALFORMED = {
    "a grade to write with no grades": (
        MINIMAL + "writeback:\n  properties: {score: lead_score, grade: lead_grade}\n",
        "FILE: writeback.properties.grade: expected a scoring.grades section to write a grade from, found none",
    ),
    "unknown top-level key": (
        MINIMAL + "schedul:\n  every: 15m\n",
        "FILE: schedul: expected one of crm, description, examples, fields, schedule, scoring, store, tasks, tenant, tolerance, "
        "writeback, found unknown key 'schedul'",
    ),
    "unknown condition operator": (
        edited("contains: vp}", "startswith: vp}"),
        "FILE: scoring.rules[0].when.startswith: expected one of age, ahead, case_sensitive, contains, equals, exists, "
        "field, in, missing, range, regex, found unknown key 'startswith'",
    ),
    "points not a number": (
        edited("points: 5", "points: five"),
        "FILE: scoring.rules[0].points: expected a number, found 'five'",
    ),
    "unknown activity kind": (
        edited("activity: page_view", "activity: pageview"),
        "FILE: scoring.rules[1].activity[0]: expected one of 'email_sent', 'email_open', 'email_click', "
        "'email_reply', 'email_bounce', 'unsubscribe', 'form_submit', 'page_view', 'meeting', 'call', 'note', "
        "'task', 'webinar', 'deal_won', 'deal_lost' or 'other' (the kinds every connector maps its activities onto; "
        "to match the CRM's own activity type, write vendor_type: pageview instead of activity), found 'pageview'",
    ),
    "bands with a gap": (
        edited("{name: intermediate, min: 6}", "{name: intermediate, min: 6, below: 9}"),
        "FILE: scoring.bands[2].min: expected 9, where band 'intermediate' ends, found 10 (a gap)",
    ),
    "bands that overlap": (
        edited("{name: intermediate, min: 6}", "{name: intermediate, min: 6, below: 12}"),
        "FILE: scoring.bands[2].min: expected 12, where band 'intermediate' ends, found 10 (an overlap)",
    ),
    "bands out of order": (
        edited("{name: qualified, min: 10}", "{name: qualified, min: 4}"),
        "FILE: scoring.bands[2].min: expected a min above 6 (bands go from lowest to highest), found 4",
    ),
    "a floor under the first band": (
        edited("{name: unqualified}", "{name: unqualified, min: 0}"),
        "FILE: scoring.bands[0].min: expected no min or above on the first band (it takes every score below the next "
        "one), found 0",
    ),
    "a field the tenant does not read": (
        edited("{field: title, contains: vp}", "{field: titel, contains: vp}"),
        "FILE: scoring.rules[0].when.field: expected a name from fields (country, title), a contact attribute or "
        "raw.<property>, found 'titel'",
    ),
    "a broken regex": (
        edited("contains: vp}", "regex: '(vp'}"),
        "FILE: scoring.rules[0].when.regex: expected a valid regular expression, found '(vp' (missing ), "
        "unterminated subpattern at position 0)",
    ),
    "two operators in one condition": (
        edited("contains: vp}", "contains: vp, equals: CEO}"),
        "FILE: scoring.rules[0].when: expected exactly one of equals, in, contains, regex, range, age, ahead, "
        "exists, missing, found equals, contains",
    ),
    "a negative window": (
        edited("      points: 2\n", "      points: 2\n      within_days: -7\n"),
        "FILE: scoring.rules[1].within_days: expected a number above 0, found -7",
    ),
    "a duplicate rule id": (
        edited("- id: pricing", "- id: vp"),
        "FILE: scoring.rules[1].id: expected an id no other rule uses, found 'vp'",
    ),
    "an unknown CRM": (
        edited("kind: hubspot", "kind: zoho"),
        "FILE: crm.kind: expected an installed CRM kind (file, hubspot, pipedrive, salesforce), found 'zoho'",
    ),
    "an unknown connection key": (
        edited("tier: starter", "tier: starter\n    token: abc"),
        "FILE: crm.connection.token: expected one of base_url, capacity_pack, daily_limit, lookback_seconds, tier, "
        "timeout_seconds, found unknown key 'token'",
    ),
    "a bad tier": (
        edited("tier: starter", "tier: gold"),
        "FILE: crm.connection.tier: expected one of 'free', 'starter', 'professional' or 'enterprise', found 'gold'",
    ),
    "the token the CRM needs is not referenced": (
        edited("    access_token: {env: ACME_TOKEN}\n", "    api_token: {env: ACME_TOKEN}\n"),
        "FILE: crm.secrets.access_token: expected a reference {env: NAME} or {file: PATH} (hubspot needs "
        "access_token), found nothing\n"
        "FILE: crm.secrets.api_token: expected one of access_token for hubspot, found unknown secret 'api_token'",
    ),
    "a duration that is not one": (
        MINIMAL + "schedule:\n  every: soon\n",
        "FILE: schedule.every: expected a duration like 90s, 15m, 2h, 7d, 6w or 3mo, found 'soon'",
    ),
    "a bad cron line": (
        MINIMAL + "schedule:\n  cron: '*/15 * *'\n",
        "FILE: schedule.cron: expected a cron line with five fields (minute hour day month weekday), found '*/15 * *'",
    ),
    "an unknown lifecycle stage": (
        MINIMAL.replace("  quadrant:", "  lifecycle:\n    values: {lead: lead, hot: hot}\n  quadrant:"),
        "FILE: scoring.lifecycle.values.hot: expected a key that is one of 'subscriber', 'lead', 'mql', 'sql' or "
        "'customer', found 'hot'",
    ),
    "a task trigger on a band that does not exist": (
        MINIMAL + "tasks:\n  on_bands: [hot]\n",
        "FILE: tasks.on_bands[0]: expected one of the bands unqualified, intermediate, qualified, found 'hot'",
    ),
    "an unknown placeholder in the task subject": (
        MINIMAL + "tasks:\n  subject: 'Call {nmae}'\n",
        "FILE: tasks.subject: expected placeholders among {name}, {email}, {score}, {fit}, {engagement}, {band}, "
        "{grade}, {quadrant}, {status}, {reasons}, found {nmae}",
    ),
    "a missing required section": (
        MINIMAL.split("scoring:")[0],
        "FILE: scoring: expected a value, found nothing",
    ),
    "a key given twice": (
        MINIMAL + "tenant: other\n",
        "FILE: (document): expected each key once, found 'tenant' twice (again at line 24)",
    ),
    "not YAML at all": (
        "tenant: acme\ncrm: [unclosed\n",
        "FILE: (document): expected valid YAML, found expected ',' or ']', but got '<stream end>' at line 3 column 1",
    ),
    "an empty file": ("", "FILE: (document): expected a mapping with tenant, crm and scoring, found an empty file"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_file_is_refused_with_its_exact_message(tmp_path: Path, case: str) -> None:
    text, message = MALFORMED[case]
    assert refusal(tmp_path, text) == message


@pytest.mark.parametrize("line", ["*/30 6-20 * * 1-5", "0 9 * * 7", "0 9 * * 5-7", "0 9 1,15 * 0,6", "0 9 * jan-jun sun"])
def test_a_standard_cron_line_loads(tmp_path: Path, line: str) -> None:
    assert load_tenant(write(tmp_path, MINIMAL + f"schedule:\n  cron: '{line}'\n")).schedule.cron == line


@pytest.mark.parametrize(("line", "why"), [
    ("0 9 * * 8", "expected a weekday 0-7 (0 and 7 are Sunday) or sun-sat, found '8'"),
    ("0 9 last * *", "expected numbers, ranges, lists and steps in each field, found 'last'"),
    ("0 9 * * fri-mon", "expected a weekday range low-high with a step of 1 or more, found 'fri-mon'"),
])
def test_a_cron_line_the_daemon_cannot_run_as_cron_would_is_refused(tmp_path: Path, line: str, why: str) -> None:
    assert refusal(tmp_path, MINIMAL + f"schedule:\n  cron: '{line}'\n") == (
        "FILE: schedule.cron: expected a cron line with five fields (minute hour day month weekday), "
        f"found {line!r} ({why})")


def test_several_faults_are_reported_together_one_per_line(tmp_path: Path) -> None:
    text = edited("points: 5", "points: five").replace("tier: starter", "tier: gold").replace("{fit: 5,", "{fit: x,")
    path = write(tmp_path, text)
    with pytest.raises(ConfigErrors) as caught:
        load_tenant(path)
    assert str(caught.value).splitlines() == [
        f"{path}: scoring.rules[0].points: expected a number, found 'five'",
        f"{path}: scoring.quadrant.fit: expected a number, found 'x'",
        f"{path}: crm.connection.tier: expected one of 'free', 'starter', 'professional' or 'enterprise', found 'gold'",
    ]


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(file\): expected a readable tenant file, found No such file"):
        load_tenant(tmp_path / "absent.yaml")


# ---------------------------------------------------------------- a folder of tenants


def test_one_bad_file_never_stops_the_others(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, edited("points: 5", "points: five"), "b.yml")
    write(tmp_path, MINIMAL.replace("tenant: acme", "tenant: globex"), "c.yaml")
    tenants, errors = load_config_dir(tmp_path)
    assert [t.name for t in tenants] == ["acme", "globex"]
    assert [str(e) for e in errors] == [f"{tmp_path / 'b.yml'}: scoring.rules[0].points: expected a number, found 'five'"]


def test_a_tenant_name_used_by_two_files_is_refused_in_both_naming_both(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "acme.yaml")
    write(tmp_path, MINIMAL, "acme-v1.yaml")
    write(tmp_path, MINIMAL.replace("tenant: acme", "tenant: globex"), "globex.yaml")
    tenants, errors = load_config_dir(tmp_path)
    assert [t.name for t in tenants] == ["globex"]
    assert [str(e) for e in errors] == [
        f"tenant 'acme' is named by 2 files in {tmp_path}, {tmp_path / 'acme-v1.yaml'} and {tmp_path / 'acme.yaml'}: "
        "none of them is loaded, since any could pass for the tenant's live rules; rename the tenant in one of them "
        f"(its tenant: key), or move the copy out of {tmp_path}"
    ]
    assert isinstance(errors[0], DuplicateTenant) and errors[0].paths == (tmp_path / "acme-v1.yaml", tmp_path / "acme.yaml")


def test_a_tenant_name_used_by_three_files_names_all_three(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml", "c.yaml"):
        write(tmp_path, MINIMAL, name)
    tenants, errors = load_config_dir(tmp_path)
    assert tenants == []
    assert [str(e) for e in errors] == [
        f"tenant 'acme' is named by 3 files in {tmp_path}, {tmp_path / 'a.yaml'}, {tmp_path / 'b.yml'} and "
        f"{tmp_path / 'c.yaml'}: none of them is loaded, since any could pass for the tenant's live rules; rename the "
        f"tenant in all but one of them (their tenant: key), or move the copies out of {tmp_path}"
    ]


def test_a_tenant_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "acme.yaml"
    path.write_bytes(MINIMAL.replace("tenant: acme", "tenant: acme\ndescription: Caf\xe9 leads").encode("latin-1"))
    with pytest.raises(ConfigError) as refused:
        load_tenant(path)
    assert str(refused.value) == (f"{path}: (file): expected a UTF-8 text file (save it as UTF-8), "
                                  "found line 2 (byte 29) not UTF-8")


def test_a_bad_tenant_file_never_stops_the_others_in_its_folder(tmp_path):
    write(tmp_path, MINIMAL)
    (tmp_path / "b.yaml").write_bytes("tenant: b\ndescription: \xe9\n".encode("latin-1"))
    (tmp_path / "c.yaml").write_text("tenant: [c\n")
    tenants, errors = load_config_dir(tmp_path)
    assert [t.name for t in tenants] == ["acme"]
    assert [(e.path.name, e.key_path) for e in errors] == [("b.yaml", "(file)"), ("c.yaml", "(document)")]


def test_a_config_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"nothing: \(folder\): expected a folder of tenant files .*no such folder"):
        load_config_dir(tmp_path / "nothing")
