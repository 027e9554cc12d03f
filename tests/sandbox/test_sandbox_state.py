"""The living CRM: writes, additions and time queries over a synthetic tenant."""
from leadpulse.sandbox.state import Crm
from leadpulse.sandbox.synth import ActivityKind, Tenant

ANCHOR = 1_750_000_000_000


def make_crm(size=100):
    clock = iter(range(ANCHOR + 1000, ANCHOR + 10**9, 1000))
    return Crm(Tenant(size, seed=1, anchor_ms=ANCHOR), clock_ms=lambda: next(clock))


def test_edit_contact_applies_and_moves_updated_at():
    crm = make_crm()
    before = crm.contact("8")["updated_ms"]
    crm.edit_contact("8", title="Chief Revenue Officer", leadpulse_score="42")
    after = crm.contact("8")
    assert after["title"] == "Chief Revenue Officer" and after["leadpulse_score"] == "42"
    assert after["updated_ms"] > before


def test_updated_between_finds_generated_and_moved_contacts():
    crm = make_crm()
    recent = crm.updated_between(ANCHOR - 86_400_000, ANCHOR)
    assert recent == sorted(i for i in range(100) if crm.updated_ms(i) >= ANCHOR - 86_400_000)
    crm.edit_contact("1", title="x")
    assert crm.updated_between(ANCHOR + 1, ANCHOR + 10**9) == [0]


def test_add_activity_is_listed_with_the_contact_and_by_kind():
    crm = make_crm()
    activity = crm.add_activity("3", "meeting", outcome="completed")
    assert activity in crm.activities(2)
    assert activity in list(crm.iter_activities(ActivityKind.MEETING))
    assert activity in list(crm.activities_touched_since(ActivityKind.MEETING, ANCHOR))


def test_added_contact_has_no_history_and_a_fresh_id():
    crm = make_crm()
    contact_id = crm.add_contact(title="Founder")
    assert contact_id == "101" and crm.size == 101
    assert crm.activities(100) == [] and crm.contact(contact_id)["title"] == "Founder"


def test_touch_moves_exactly_count_contacts():
    crm = make_crm()
    touched = crm.touch(7, seed=2)
    assert len(set(touched)) == 7
    assert len(crm.updated_between(ANCHOR + 1, ANCHOR + 10**9)) == 7


def test_iter_activities_resumes_after_an_id():
    crm = make_crm()
    calls = list(crm.iter_activities(ActivityKind.CALL))
    assert list(crm.iter_activities(ActivityKind.CALL, after_id=calls[4].id)) == calls[5:]
