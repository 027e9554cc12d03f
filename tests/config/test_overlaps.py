"""Engagement rules one activity can count for together: which pairs are flagged, with which example value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
import yaml

from leadpulse.core.config.overlaps import find_overlaps, regex_examples
from leadpulse.core.engine.rules import ScoringConfig

PRICING = {"id": "pricing", "activity": "page_view", "where": {"field": "url", "contains": "/pricing"}, "points": 5}
BLOG = {"id": "blog", "activity": "page_view", "where": {"field": "url", "contains": "/blog"}, "points": 1}


def scoring(*rules: dict[str, Any]) -> ScoringConfig:
    return ScoringConfig.model_validate({"rules": list(rules), "bands": [{"name": "cold"}, {"name": "hot", "min": 10}],
                                         "quadrant": {"fit": 1, "engagement": 1}})


def stored(values: dict[tuple[str, tuple[str, ...]], list[Any]]):
    """Stored attribute values by (attribute key, activity kinds), and the questions asked of them."""
    asked: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []

    def values_of(key: str, kinds: tuple[str, ...], vendor_types: tuple[str, ...]) -> Iterable[Any]:
        asked.append((key, kinds, vendor_types))
        return values.get((key, kinds), [])

    values_of.asked = asked  # type: ignore[attr-defined]  # read back by the tests
    return values_of


def test_a_pricing_rule_and_a_blog_rule_are_flagged_with_a_value_made_from_both():
    [overlap] = find_overlaps(scoring(PRICING, BLOG))
    assert (overlap.rules, overlap.activities, overlap.attribute) == (("pricing", "blog"), ("page_view",), "url")
    assert (overlap.example, overlap.stored) == ("/pricing/blog", False)
    assert str(overlap) == (
        "rules 'pricing' and 'blog' can both count one page_view: url '/pricing/blog' (made from the two rules' "
        "values) matches both; if an activity should count for one of them only, exclude the other in one rule's "
        "where, e.g. in 'pricing': where: {all: [{field: url, contains: /pricing}, {not: {field: url, contains: "
        "/blog}}]}")


def test_the_example_is_a_stored_value_when_one_matches_both():
    values = stored({("url", ("page_view",)): ["/pricing", "/blog/intro", "/blog/pricing-tips", "/pricing/blog-x"]})
    [overlap] = find_overlaps(scoring(PRICING, BLOG), values)
    assert (overlap.example, overlap.stored) == ("/blog/pricing-tips", True)
    assert values.asked == [("url", ("page_view",), ())]
    assert "url '/blog/pricing-tips' (seen on a stored activity) matches both" in str(overlap)


def test_without_a_stored_value_matching_both_the_example_is_made_from_the_rules():
    values = stored({("url", ("page_view",)): ["/pricing", "/blog/intro"]})
    [overlap] = find_overlaps(scoring(PRICING, BLOG), values)
    assert (overlap.example, overlap.stored) == ("/pricing/blog", False)


def test_the_suggested_where_makes_the_two_rules_exclusive():
    [overlap] = find_overlaps(scoring(PRICING, BLOG))
    fixed = {**PRICING, "where": yaml.safe_load(overlap.exclusive)}
    assert find_overlaps(scoring(fixed, BLOG)) == []


def test_rules_on_different_activity_kinds_are_not_flagged():
    form = {**BLOG, "activity": "form_submit"}
    assert find_overlaps(scoring(PRICING, form)) == []


def test_rules_sharing_one_of_their_kinds_are_flagged_on_that_kind():
    both = {**BLOG, "activity": ["form_submit", "page_view"]}
    assert [o.activities for o in find_overlaps(scoring(PRICING, both))] == [("page_view",)]


def test_rules_on_the_same_vendor_type_are_flagged():
    first = {"id": "a", "vendor_type": "webvisit", "where": {"field": "url", "contains": "/pricing"}, "points": 1}
    second = {"id": "b", "vendor_type": ["webvisit", "other"], "where": {"field": "url", "contains": "/blog"},
              "points": 1}
    assert [o.activities for o in find_overlaps(scoring(first, second))] == [("webvisit",)]


def test_rules_reading_different_attributes_are_not_flagged():
    title = {**BLOG, "where": {"field": "title", "contains": "blog"}}
    assert find_overlaps(scoring(PRICING, title)) == []


def test_a_rule_that_excludes_the_other_already_is_not_flagged():
    demo = {"id": "demo", "activity": "form_submit", "where": {"field": "form", "regex": "demo|contact sales"},
            "points": 10}
    content = {"id": "content", "activity": "form_submit",
               "where": {"not": {"field": "form", "regex": "demo|contact sales"}}, "points": 2}
    assert find_overlaps(scoring(demo, content)) == []


def test_a_rule_refining_another_is_not_flagged():
    enterprise = {**BLOG, "id": "enterprise", "where": {"field": "url", "equals": "/pricing/enterprise"}}
    assert find_overlaps(scoring(PRICING, enterprise)) == []


def test_two_different_equals_never_overlap():
    first = {**PRICING, "where": {"field": "url", "equals": "/pricing"}}
    second = {**BLOG, "where": {"field": "url", "in": ["/blog", "/news"]}}
    assert find_overlaps(scoring(first, second)) == []


def test_rules_with_the_same_condition_are_not_flagged():
    assert find_overlaps(scoring(PRICING, {**PRICING, "id": "pricing-again", "axis": "engagement"})) == []


@pytest.mark.parametrize("where", [
    {"all": [{"field": "url", "contains": "/blog"}, {"field": "source", "equals": "ads"}]},
    {"field": "url", "exists": True},
    {"any": [{"field": "url", "contains": "/blog"}, {"field": "url", "exists": True}]},
    {"field": "vendor_type", "equals": "webvisit"},
], ids=["another attribute", "exists", "exists among others", "vendor_type"])
def test_a_condition_beyond_contains_equals_in_and_regex_on_one_attribute_is_not_checked(where):
    assert find_overlaps(scoring(PRICING, {**BLOG, "where": where})) == []


def test_a_regex_rule_overlapping_a_contains_rule_is_flagged_with_an_example_of_its_regex():
    blog = {**BLOG, "where": {"field": "url", "regex": "^/blog/[a-z]+"}}
    [overlap] = find_overlaps(scoring(blog, PRICING))
    assert overlap.example == "/blog/a/pricing"


def test_regexes_anchored_apart_are_not_flagged():
    first = {**PRICING, "where": {"field": "url", "regex": "^/pricing"}}
    second = {**BLOG, "where": {"field": "url", "regex": "^/blog"}}
    assert find_overlaps(scoring(first, second)) == []


def test_rules_are_paired_in_rule_order_and_ids_derived_when_none_is_given():
    careers = {**BLOG, "id": "careers", "where": {"field": "url", "contains": "/careers"}}
    unnamed = {key: value for key, value in BLOG.items() if key != "id"}
    assert [o.rules for o in find_overlaps(scoring(PRICING, careers, unnamed))] == [
        ("pricing", "careers"), ("pricing", "page_view"), ("careers", "page_view")]


@pytest.mark.parametrize(("pattern", "examples"), [
    ("demo|contact sales", ["demo", "contact sales"]),
    (r"\b(vp|head|chief)\b", ["vp", "head", "chief"]),
    ("^/blog/[a-z]+$", ["/blog/a"]),
    ("colou?r", ["colour"]),
    (r"\d{3}-\d{2,}", ["000-00"]),
    ("(?P<page>ab)c", ["abc"]),
    ("(a|b)(c|d)", ["ac", "ad", "bc", "bd"]),
    ("(?=x)y", []),
    ("(?i)demo", []),
    ("[^a]", []),
    (r"(a)\1", []),
])
def test_regex_examples(pattern, examples):
    assert regex_examples(pattern) == examples
