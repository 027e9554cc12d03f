"""Engagement rules one activity can count for together although they read as alternatives: two rules on the same
activity kinds whose ``where`` reads one attribute with different values (``contains: /pricing`` beside
``contains: /blog``), when some value (``/blog/pricing-tips``) matches both. ``leadpulse validate`` warns of each
such pair with that value: one found among the tenant's stored activities when any matches, else one made from the
two rules' own values.

Only the plain case is looked at, so that a warning is worth reading: each condition reads one attribute and nothing
else, through contains, equals, in and regex (combined with all, any and not), and the two conditions differ. A rule
whose own value matches the other (``equals: /pricing/enterprise`` beside ``contains: /pricing``) refines it, which
reads as points stacked on purpose, and is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations, islice
from typing import Any

import yaml

from leadpulse.core.engine.conditions import Predicate, attribute_key, compile_condition
from leadpulse.core.engine.rules import EngagementRule, Leaf, ScoringConfig, leaves

#: (attribute key, activity kinds, vendor types) -> values of that attribute on stored activities of those kinds
#: or vendor types, each value once
StoredValues = Callable[[str, tuple[str, ...], tuple[str, ...]], Iterable[Any]]

_OPERATORS = frozenset({"contains", "equals", "in", "regex"})


@dataclass(frozen=True)
class Overlap:
    """Two engagement rules that can both count one activity: `example` is a value of `attribute` both match."""

    rules: tuple[str, str]
    #: the activity kinds and vendor types both rules count
    activities: tuple[str, ...]
    attribute: str
    example: str
    #: whether `example` was found on a stored activity (else it is made from the rules' own values)
    stored: bool
    #: the first rule's ``where`` with the second's excluded, as YAML
    exclusive: str

    def __str__(self) -> str:
        first, second = self.rules
        source = "seen on a stored activity" if self.stored else "made from the two rules' values"
        return (f"rules {first!r} and {second!r} can both count one {' or '.join(self.activities)}: "
                f"{self.attribute} {self.example!r} ({source}) matches both; if an activity should count for one of "
                f"them only, exclude the other in one rule's where, e.g. in {first!r}: where: {self.exclusive}")


@dataclass(frozen=True)
class _Alternative:
    """An engagement rule whose ``where`` tests one attribute's value, as the overlap check reads it."""

    rule_id: str
    rule: EngagementRule
    key: str
    field: str
    test: Predicate
    #: the texts its condition names (contains, equals, in, and examples of its regexes)
    values: tuple[str, ...]

    @classmethod
    def of(cls, rule_id: str, rule: Any) -> _Alternative | None:
        if not isinstance(rule, EngagementRule) or rule.where is None:
            return None
        tested = leaves(rule.where)
        keys = {attribute_key(leaf.field) for leaf in tested}
        if len(keys) != 1 or None in keys or any(leaf.operator() not in _OPERATORS for leaf in tested):
            return None
        values = tuple(value for leaf in tested for value in _values(leaf))
        return cls(rule_id, rule, str(keys.pop()), tested[0].field, compile_condition(rule.where, None), values)

    def refines(self, other: _Alternative) -> bool:
        """Whether a value this rule itself names, and matches, matches `other` too."""
        return any(self.test(value) and other.test(value) for value in self.values)

    def activities(self, other: _Alternative) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The activity kinds and the vendor types both rules count."""
        kinds = sorted(set(self.rule.kinds()) & set(other.rule.kinds()))
        return tuple(kinds), tuple(sorted(set(self.rule.vendor_types()) & set(other.rule.vendor_types())))


def find_overlaps(scoring: ScoringConfig, stored: StoredValues | None = None) -> list[Overlap]:
    """Each pair of `scoring`'s engagement rules that one activity can count for together (see the module
    docstring), in rule order; `stored` gives the values seen on the tenant's activities, if it has a store."""
    rules = [_Alternative.of(rule_id, rule) for rule_id, rule in zip(scoring.rule_ids(), scoring.rules, strict=True)]
    found = []
    for first, second in combinations([rule for rule in rules if rule is not None], 2):
        kinds, vendor_types = first.activities(second)
        if first.key != second.key or not (kinds or vendor_types) or first.rule.where == second.rule.where:
            continue
        if first.refines(second) or second.refines(first):
            continue
        seen = stored(first.key, kinds, vendor_types) if stored is not None else ()
        example = next((str(value) for value in seen if _both(first, second, value)), None)
        made = example is None
        if made:
            example = next((value for value in _blends(first, second) if _both(first, second, value)), None)
        if example is not None:
            found.append(Overlap((first.rule_id, second.rule_id), (*kinds, *vendor_types), first.field, example,
                                 stored=not made, exclusive=_excluding(first.rule.where, second.rule.where)))
    return found


class _FlowDumper(yaml.SafeDumper):
    """YAML on one line, as a tenant file writes a condition, each mapping spelt out (no anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _excluding(kept: Any, excluded: Any) -> str:
    def plain(condition: Any) -> Any:
        return condition.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    both = {"all": [plain(kept), {"not": plain(excluded)}]}
    return yaml.dump(both, Dumper=_FlowDumper, default_flow_style=True, width=1_000_000, sort_keys=False).strip()


def _both(first: _Alternative, second: _Alternative, value: Any) -> bool:
    return first.test(value) and second.test(value)


def _blends(first: _Alternative, second: _Alternative) -> Iterator[str]:
    """Values made of the two rules' own: each alone, then each of one rule's joined to each of the other's."""
    yield from first.values
    yield from second.values
    for one in first.values:
        for other in second.values:
            yield one + other
            yield other + one


def _values(leaf: Leaf) -> list[str]:
    if leaf.contains is not None:
        return [leaf.contains]
    if leaf.regex is not None:
        return regex_examples(leaf.regex)
    named = [leaf.equals] if leaf.in_ is None else list(leaf.in_)
    return [_text(value) for value in named if value is not None]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- examples of a regular expression

#: examples kept per expression: a branch each, up to this many
_MOST_EXAMPLES = 8
#: what a class escape stands for in an example
_ESCAPES = {"d": "0", "D": "x", "w": "a", "W": "-", "s": " ", "S": "x", "b": "", "B": "", "A": "", "Z": ""}


def regex_examples(pattern: str) -> list[str]:
    """A few texts `pattern` may match (one per branch of an alternation), or none for what this small reader
    leaves alone (lookarounds, inline flags, back-references, negated classes). They are candidates: the caller
    tests each with the condition itself."""
    try:
        examples, end = _sequence(pattern, 0)
    except (ValueError, IndexError):
        return []
    return examples if end == len(pattern) else []


def _sequence(pattern: str, i: int) -> tuple[list[str], int]:
    """Examples of the alternation that starts at `i`, up to its closing parenthesis or the end."""
    branches: list[str] = []
    current = [""]
    while i < len(pattern) and pattern[i] != ")":
        if pattern[i] == "|":
            branches += current
            current, i = [""], i + 1
            continue
        atom, i = _atom(pattern, i)
        atom, i = _repeated(pattern, i, atom)
        current = list(islice((head + tail for head in current for tail in atom), _MOST_EXAMPLES))
    return (branches + current)[:_MOST_EXAMPLES], i


def _atom(pattern: str, i: int) -> tuple[list[str], int]:
    char = pattern[i]
    if char == "(":
        i += 1
        if pattern.startswith("?:", i):
            i += 2
        elif pattern.startswith("?P<", i):
            i = pattern.index(">", i) + 1
        elif pattern.startswith("?", i):
            raise ValueError("a lookaround or inline flag")
        inner, i = _sequence(pattern, i)
        if pattern[i] != ")":
            raise ValueError("an unclosed group")
        return inner, i + 1
    if char == "[":
        end = pattern.index("]", i + 2)
        first = pattern[i + 1]
        if first == "^":
            raise ValueError("a negated class")
        return [_ESCAPES.get(pattern[i + 2], pattern[i + 2]) if first == "\\" else first], end + 1
    if char == "\\":
        escaped = pattern[i + 1]
        if escaped.isdigit():
            raise ValueError("a back-reference")
        return [_ESCAPES.get(escaped, escaped)], i + 2
    if char in "^$":
        return [""], i + 1
    if char in "*+?{":
        raise ValueError("a quantifier with nothing to repeat")
    return ["x" if char == "." else char], i + 1


def _repeated(pattern: str, i: int, atom: list[str]) -> tuple[list[str], int]:
    """`atom` as often as the quantifier after it asks at least (once when it may be absent: an example with it
    matches too)."""
    if i >= len(pattern) or pattern[i] not in "*+?{":
        return atom, i
    times = 1
    if pattern[i] == "{":
        end = pattern.index("}", i)
        times = max(1, int(pattern[i + 1:end].split(",")[0] or 0))
        i = end + 1
    else:
        i += 1
    if i < len(pattern) and pattern[i] in "?+":  # lazy or possessive
        i += 1
    return [text * times for text in atom], i
