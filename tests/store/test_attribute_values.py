"""`Store.attribute_values`: the values one attribute takes on the stored activities of some kinds or vendor types."""

from __future__ import annotations

from datetime import timedelta

from support import T0

from leadpulse.core.contract import Page
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind

VIEW, FORM = ActivityKind.PAGE_VIEW, ActivityKind.FORM_SUBMIT


def seed(store, *activities: Activity) -> None:
    store.apply_page(Page("contacts", "c1", contacts=[Contact("c1", ContactKind.CONTACT, T0)], activities=activities))


def activity(aid: str, kind: ActivityKind = VIEW, vendor_type: str | None = None, **attributes) -> Activity:
    return Activity(aid, "c1", kind, T0 - timedelta(days=1), vendor_type, attributes)


def test_each_value_of_the_kinds_asked_once(store):
    seed(store, activity("a1", url="/pricing"), activity("a2", url="/blog/x"), activity("a3", url="/pricing"),
         activity("a4", FORM, url="/contact"), activity("a5", form="demo"))
    assert sorted(store.attribute_values("url", ["page_view"])) == ["/blog/x", "/pricing"]
    assert sorted(store.attribute_values("url", ["page_view", "form_submit"])) == ["/blog/x", "/contact", "/pricing"]


def test_activities_of_a_vendor_type_asked_count_whatever_their_kind(store):
    seed(store, activity("a1", ActivityKind.OTHER, "webvisit", url="/a"), activity("a2", ActivityKind.OTHER, url="/b"))
    assert store.attribute_values("url", [], ["webvisit"]) == ["/a"]


def test_at_most_limit_values(store):
    seed(store, *(activity(f"a{i}", url=f"/page/{i}") for i in range(5)))
    assert len(store.attribute_values("url", ["page_view"], limit=3)) == 3


def test_a_key_with_a_dot_is_one_key_not_a_path(store):
    seed(store, activity("a1", **{"utm.source": "ads"}))
    assert store.attribute_values("utm.source", ["page_view"]) == ["ads"]


def test_nothing_asked_nothing_found(store):
    seed(store, activity("a1", url="/a"))
    assert store.attribute_values("url", []) == []
    assert store.attribute_values('u"rl', ["page_view"]) == []
