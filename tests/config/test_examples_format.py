"""A tenant file's examples section: what it holds once loaded, and malformed examples refused with exact
messages naming the key path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadpulse.core.config.examples import DEFAULT_AS_OF
from leadpulse.core.config.files import load_tenant
from leadpulse.core.errors import ConfigError
from leadpulse.core.model import ActivityKind, ContactKind

TENANT = """\
tenant: acme
crm:
  kind: hubspot
  connection: {tier: starter}
  secrets: {access_token: {env: ACME_TOKEN}}
fields:
  title: jobtitle
  started: project_start
scoring:
  rules:
    - {id: vp, when: {field: title, contains: vp}, points: 5}
    - {id: pricing, activity: page_view, points: 2}
  bands:
    - {name: cold}
    - {name: warm, min: 5}
    - {name: hot, min: 10}
  quadrant: {fit: 5, engagement: 5}
"""

ONE_EXAMPLE = """\
examples:
  - name: VP
    contact: {title: VP Sales}
    expect: {band: warm}
"""


#: a lifecycle section, to follow TENANT (whose last lines are the scoring section's)
TENANT_LIFECYCLE = """\
  lifecycle:
    values: {lead: lead, mql: mql}
    transitions: [{to: mql, min_band: hot}]
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "acme.yaml"
    path.write_text(TENANT + text, encoding="utf-8")
    return load_tenant(path)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value).replace(str(tmp_path / "acme.yaml"), "FILE")


def test_a_file_without_examples_has_none(tmp_path):
    assert load(tmp_path, "").examples.cases == ()


def test_the_contact_takes_neutral_fields_attributes_and_raw_properties_side_by_side(tmp_path):
    tenant = load(tmp_path, """\
examples:
  - name: VP
    contact: {title: VP Sales, started: 2024-11-01, email: ana@acme.example, status: lead, opted_out: true,
              kind: lead, raw: {hs_lead_status: OPEN}}
    expect: {band: warm}
""")
    contact = tenant.examples.cases[0].contact
    assert dict(contact.fields) == {"title": "VP Sales", "started": "2024-11-01"}  # a date as the CRM sends it
    assert (contact.email, contact.status, contact.opted_out, contact.kind) == (
        "ana@acme.example", "lead", True, ContactKind.LEAD)
    assert dict(contact.raw) == {"hs_lead_status": "OPEN"}


def test_activities_are_placed_their_age_before_the_examples_moment_or_at_their_own(tmp_path):
    tenant = load(tmp_path, """\
examples:
  - name: busy
    activities:
      - {kind: page_view, age: 6w, count: 2, attributes: {url: /pricing}}
      - {vendor_type: lunch, at: 2024-12-24T12:00:00Z}
    expect: {score: 0}
""")
    example = tenant.examples.cases[0]
    contact, activities = example.build("example-1", DEFAULT_AS_OF)
    assert [(a.kind, a.occurred_at, a.vendor_type, dict(a.attributes)) for a in activities] == [
        (ActivityKind.PAGE_VIEW, DEFAULT_AS_OF - timedelta(weeks=6), None, {"url": "/pricing"}),
        (ActivityKind.PAGE_VIEW, DEFAULT_AS_OF - timedelta(weeks=6), None, {"url": "/pricing"}),
        (ActivityKind.OTHER, datetime(2024, 12, 24, 12, tzinfo=UTC), "lunch", {}),
    ]
    assert len({a.id for a in activities}) == 3 and {a.contact_id for a in activities} == {contact.id}


def test_an_example_is_scored_at_its_own_moment_else_the_sections_else_the_documented_default(tmp_path):
    listed = load(tmp_path, ONE_EXAMPLE).examples
    assert listed.moment(listed.cases[0]) == DEFAULT_AS_OF == datetime(2025, 1, 1, tzinfo=UTC)
    block = load(tmp_path, """\
examples:
  as_of: 2025-03-01T09:00:00+01:00
  cases:
    - {name: shared, expect: {band: cold}}
    - {name: own, as_of: 2025-04-01, expect: {band: cold}}
""").examples
    assert [block.moment(example) for example in block.cases] == [
        datetime(2025, 3, 1, 8, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)]


def test_a_null_status_expects_no_move(tmp_path):
    tenant = load(tmp_path, TENANT_LIFECYCLE + "examples:\n  - {name: quiet, expect: {status: null}}\n")
    assert tenant.examples.cases[0].expect.status == "none"


def test_a_status_must_be_a_stage_the_tenant_maps(tmp_path):
    assert refusal(tmp_path, TENANT_LIFECYCLE + "examples:\n  - {name: VP, expect: {status: sql}}\n") == (
        "FILE: examples[0].expect.status: expected none or a stage mapped under scoring.lifecycle.values (lead, "
        "mql), found 'sql'")


MALFORMED = {
    "examples not a list": (
        "examples: every contact\n",
        "FILE: examples: expected a list of examples, or a mapping of as_of and cases, found 'every contact'",
    ),
    "unknown key in an example": (
        "examples:\n  - {name: VP, expected: {band: warm}}\n",
        "FILE: examples[0].expected: expected one of activities, as_of, contact, expect, name, found unknown key "
        "'expected'",
    ),
    "a field the tenant does not read": (
        "examples:\n  - {name: VP, contact: {titel: VP}, expect: {band: warm}}\n",
        "FILE: examples[0].contact.titel: expected a name from fields (started, title), a contact attribute (email, "
        "id, kind, name, opted_out, owner_id, status) or raw, found 'titel'",
    ),
    "a field the tenant does not read, in the mapping form": (
        "examples:\n  as_of: 2025-03-01\n  cases:\n    - {name: VP, contact: {titel: VP}, expect: {band: warm}}\n",
        "FILE: examples.cases[0].contact.titel: expected a name from fields (started, title), a contact attribute "
        "(email, id, kind, name, opted_out, owner_id, status) or raw, found 'titel'",
    ),
    "a field value that is a mapping": (
        "examples:\n  - {name: VP, contact: {title: {text: VP}}, expect: {band: warm}}\n",
        "FILE: examples[0].contact.title: expected text, a number, true or false, a date, or a list of them, found "
        "a mapping",
    ),
    "an activity with neither kind nor vendor type": (
        "examples:\n  - {name: VP, activities: [{age: 2d}], expect: {band: warm}}\n",
        "FILE: examples[0].activities[0]: expected a kind (page_view, form_submit, ...) or a vendor_type, found "
        "neither",
    ),
    "an activity with an age and a moment": (
        "examples:\n  - {name: VP, activities: [{kind: call, age: 2d, at: 2024-12-01}], expect: {band: warm}}\n",
        "FILE: examples[0].activities[0]: expected exactly one of age (a duration before as_of, like 3d) or at (a "
        "moment), found both",
    ),
    "an age that is no duration": (
        "examples:\n  - {name: VP, activities: [{kind: call, age: 2 days}], expect: {band: warm}}\n",
        "FILE: examples[0].activities[0].age: expected a duration like 90s, 15m, 2h, 7d, 6w or 3mo, found '2 days'",
    ),
    "an unknown activity kind": (
        "examples:\n  - {name: VP, activities: [{kind: visit, age: 2d}], expect: {band: warm}}\n",
        "FILE: examples[0].activities[0].kind: expected one of 'email_sent', 'email_open', 'email_click', "
        "'email_reply', 'email_bounce', 'unsubscribe', 'form_submit', 'page_view', 'meeting', 'call', 'note', "
        "'task', 'webinar', 'deal_won', 'deal_lost' or 'other', found 'visit'",
    ),
    "a moment that is no moment": (
        "examples:\n  - {name: VP, as_of: last monday, expect: {band: warm}}\n",
        "FILE: examples[0].as_of: expected a moment like 2025-03-01T09:00:00Z, found 'last monday'",
    ),
    "nothing expected": (
        "examples:\n  - {name: VP, expect: {}}\n",
        "FILE: examples[0].expect: expected at least one of score, axes, band, grade, quadrant, status, found none "
        "of them",
    ),
    "a band the tenant does not have": (
        "examples:\n  - {name: VP, expect: {band: qualified}}\n",
        "FILE: examples[0].expect.band: expected one of the bands cold, warm, hot, found 'qualified'",
    ),
    "a grade without grades": (
        "examples:\n  - {name: VP, expect: {grade: A}}\n",
        "FILE: examples[0].expect.grade: expected a scoring.grades section to grade by, found 'A'",
    ),
    "an axis the tenant does not have": (
        "examples:\n  - {name: VP, expect: {axes: {intent: 3}}}\n",
        "FILE: examples[0].expect.axes.intent: expected one of the axes fit, engagement, found 'intent'",
    ),
    "a score finer than the store keeps": (
        "examples:\n  - {name: VP, expect: {score: 9.125}}\n",
        "FILE: examples[0].expect.score: expected a number with at most 2 decimals (scores are kept to 2), found "
        "9.125",
    ),
    "a status that is no stage": (
        "examples:\n  - {name: VP, expect: {status: opportunity}}\n",
        "FILE: examples[0].expect.status: expected none or a lifecycle stage (subscriber, lead, mql, sql, "
        "customer), found 'opportunity'",
    ),
    "a status without a lifecycle": (
        "examples:\n  - {name: VP, expect: {status: mql}}\n",
        "FILE: examples[0].expect.status: expected a scoring.lifecycle section to move a status by, found 'mql'",
    ),
    "an unknown quadrant": (
        "examples:\n  - {name: VP, expect: {quadrant: hot}}\n",
        "FILE: examples[0].expect.quadrant: expected one of 'follow_up_now', 'nurture', 'qualify' or 'leave', found "
        "'hot'",
    ),
    "two examples of one name": (
        "examples:\n  - {name: VP, expect: {band: warm}}\n  - {name: VP, expect: {band: hot}}\n",
        "FILE: examples[1].name: expected a name no other example uses, found 'VP'",
    ),
}


@pytest.mark.parametrize(("text", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_example_is_refused_with_its_exact_message(tmp_path, text, message):
    assert refusal(tmp_path, text) == message
