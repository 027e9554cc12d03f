"""A gone contact merged into another record (a Salesforce Lead converted into a Contact): its activities follow
it there, now and when pulled later, and its score history is copied there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import T0, Card

from leadpulse.core.contract import GoneContact, Page
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind
from leadpulse.core.store.store import HistoryEntry

CONVERTED = "converted into Contact 003A"


def person(cid: str, kind: ContactKind = ContactKind.CONTACT) -> Contact:
    return Contact(cid, kind, T0, email=f"{cid}@example.com")


def visit(aid: str, cid: str, url: str = "/pricing") -> Activity:
    return Activity(aid, cid, ActivityKind.PAGE_VIEW, T0 - timedelta(days=1), attributes={"url": url})


def converted(lead: str = "00QA", into: str | None = "003A") -> Page:
    return Page("leads", "l2", gone=[GoneContact(lead, CONVERTED, merged_into=into)])


def ids(activities: list[Activity]) -> list[str]:
    return sorted(a.id for a in activities)


def due(store) -> list[str]:
    return [c.id for c, _ in store.contacts_to_score(fingerprint="fp1")]


@pytest.fixture
def store(store):
    """The store with Lead 00QA (visits a1, a2) and Contact 003A (visit a3), both scored under fp1."""
    store.apply_page(Page("leads", "l1", contacts=[person("00QA", ContactKind.LEAD)],
                          activities=[visit("a1", "00QA"), visit("a2", "00QA")]))
    store.apply_page(Page("contacts", "c1", contacts=[person("003A")], activities=[visit("a3", "003A")]))
    store.save_scores([Card("00QA", 40, "warm"), Card("003A", 10, "cold")], run_id=1, fingerprint="fp1")
    return store


def test_a_converted_leads_activities_become_its_contacts_and_make_it_due(store):
    store.apply_page(converted())
    assert ids(store.activities("003A")) == ["a1", "a2", "a3"]
    assert store.activities("00QA") == []
    assert due(store) == ["003A"]
    [(contact, activities)] = store.contacts_to_score(all=True, chunk_size=1)
    assert contact.id == "003A" and ids(activities) == ["a1", "a2", "a3"]


def test_an_activity_both_the_lead_and_its_contact_hold_is_kept_once_as_the_contact_holds_it(store):
    store.apply_page(Page("members", "m1", activities=[visit("a1", "003A", url="/demo")]))
    store.apply_page(converted())
    assert [(a.id, a.attributes["url"]) for a in store.activities("003A")] == [("a1", "/demo"), ("a2", "/pricing"),
                                                                                ("a3", "/pricing")]
    assert store.counts()["activities"] == 3


def test_an_activity_pulled_later_under_the_leads_id_lands_on_its_contact(store):
    store.apply_page(converted())
    store.save_scores([Card("003A", 30, "warm")], run_id=2, fingerprint="fp1")
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QA")]))
    assert ids(store.activities("003A")) == ["a1", "a2", "a3", "a9"]
    assert store.activities("00QA") == []
    assert due(store) == ["003A"]


def test_applying_the_same_merge_again_moves_nothing_and_leaves_the_contact_alone(store):
    store.apply_page(converted())
    store.save_scores([Card("003A", 30, "warm")], run_id=2, fingerprint="fp1")
    store.apply_page(converted())
    assert ids(store.activities("003A")) == ["a1", "a2", "a3"]
    assert due(store) == []


def test_the_leads_history_is_copied_to_its_contact_once_and_the_lead_keeps_its_own(store):
    store.save_scores([Card("00QA", 80, "hot", as_of=T0 + timedelta(days=1))], run_id=2, fingerprint="fp1")
    lead_history = store.history("00QA")
    store.apply_page(converted())
    store.apply_page(converted())
    assert [(e.new_total, e.new_band) for e in lead_history] == [(40, "warm"), (80, "hot")]
    assert store.history("00QA") == lead_history
    contact_history = store.history("003A")
    assert len(contact_history) == 3
    assert [e for e in contact_history if e.new_band != "cold"] == lead_history


def test_the_contacts_history_reads_in_time_order_with_the_leads_rows_among_its_own(store):
    store.save_scores([Card("003A", 20, "cold", as_of=T0 + timedelta(days=2))], run_id=3, fingerprint="fp1")
    store.save_scores([Card("00QA", 80, "hot", as_of=T0 + timedelta(days=1))], run_id=2, fingerprint="fp1")
    store.apply_page(converted())
    assert [(e.at, e.new_total) for e in store.history("003A")] == [  # at the same time, its own row first
        (T0, 10), (T0, 40), (T0 + timedelta(days=1), 80), (T0 + timedelta(days=2), 20)]


def test_a_lead_converted_into_a_contact_not_stored_yet_hands_it_its_activities_when_it_arrives(store):
    store.apply_page(converted(into="003B"))
    assert store.contact("003B") is None and due(store) == []
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QA")]))
    store.apply_page(Page("contacts", "c2", contacts=[person("003B")]))
    assert due(store) == ["003B"]
    [(contact, activities)] = store.contacts_to_score(fingerprint="fp1")
    assert contact.id == "003B" and ids(activities) == ["a1", "a2", "a9"]


def test_a_lead_converted_before_it_was_ever_stored_sends_its_later_activities_to_its_contact(store):
    store.apply_page(converted(lead="00QZ"))
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QZ")]))
    assert store.contact("00QZ") is None
    assert ids(store.activities("003A")) == ["a3", "a9"]
    assert due(store) == ["003A"]


def test_an_activity_in_the_page_that_converts_its_lead_lands_on_the_contact(store):
    store.apply_page(Page("leads", "l2", activities=[visit("a9", "00QA")],
                          gone=[GoneContact("00QA", CONVERTED, merged_into="003A")]))
    assert ids(store.activities("003A")) == ["a1", "a2", "a3", "a9"]
    assert store.activities("00QA") == []


def test_merges_are_followed_to_the_record_the_person_lives_on_as_now(store):
    store.apply_page(converted())
    store.apply_page(Page("contacts", "c2", contacts=[person("003B")]))
    store.apply_page(Page("contacts", "c3", gone=[GoneContact("003A", "merged into 003B", merged_into="003B")]))
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QA")]))
    assert store.activities("003A") == []
    assert ids(store.activities("003B")) == ["a1", "a2", "a3", "a9"]


def test_a_lead_stored_again_after_its_merge_keeps_the_activities_pulled_later(store):
    store.apply_page(converted())
    store.apply_page(Page("leads", "l3", contacts=[person("00QA", ContactKind.LEAD)]))
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QA")]))
    assert ids(store.activities("00QA")) == ["a9"]
    assert ids(store.activities("003A")) == ["a1", "a2", "a3"]


def test_a_gone_contact_without_merged_into_keeps_its_activities_and_its_contact_is_not_due(store):
    store.apply_page(converted(into=None))
    store.apply_page(Page("members", "m2", activities=[visit("a9", "00QA")]))
    assert ids(store.activities("00QA")) == ["a1", "a2", "a9"]
    assert ids(store.activities("003A")) == ["a3"]
    assert store.history("003A") == [HistoryEntry(T0, 1, None, 10, None, "cold", None, None)]
    assert due(store) == []


def test_a_merge_in_a_page_that_fails_moves_nothing(store):
    broken = Page("leads", "l2", activities=[Activity("a9", "00QA", ActivityKind.PAGE_VIEW, T0,
                                                      attributes={"when": object()})],
                  gone=[GoneContact("00QA", CONVERTED, merged_into="003A")])
    with pytest.raises(TypeError):
        store.apply_page(broken)
    assert ids(store.activities("00QA")) == ["a1", "a2"]
    assert len(store.history("003A")) == 1
    store.apply_page(Page("members", "m2", activities=[visit("a8", "00QA")]))
    assert ids(store.activities("00QA")) == ["a1", "a2", "a8"]
