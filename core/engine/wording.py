"""Rules told in words: the conditions of a rule as a salesperson reads them in a reason or an explanation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadpulse.core.engine.rules import AllOf, AnyOf, Leaf, NotOf

__all__ = ["days_text", "describe", "one_of"]


def describe(condition: Any, name: str | None = None) -> str:
    """A condition as short text a salesperson reads in a reason: ``title with vp, head of or chief``. A regular
    expression that is no plain list of words is told by `name` (the rule's id, in words) rather than shown."""
    if isinstance(condition, AllOf | AnyOf):
        parts = condition.all if isinstance(condition, AllOf) else condition.any
        text = (" and " if isinstance(condition, AllOf) else " or ").join(describe(part, name) for part in parts)
    elif isinstance(condition, NotOf):
        text = f"not ({describe(condition.not_, name)})"
    else:
        text = _describe_leaf(condition, name)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_leaf(leaf: Leaf, name: str | None = None) -> str:
    op = leaf.operator()
    bounds = leaf.range
    if bounds is not None:
        signs = {"min": ">=", "above": ">", "below": "<", "max": "<="}
        return f"{leaf.field} " + " ".join(f"{signs[name]}{_shown(bound)}" for name, bound in bounds.bounds().items())
    span = leaf.age if leaf.age is not None else leaf.ahead
    if span is not None:
        words = {"min": "at least", "above": "more than", "below": "less than", "max": "at most"}
        told = " and ".join(f"{words[name]} {days_text(days)}" for name, days in span.bounds().items())
        return f"{leaf.field} {told} ago" if leaf.age is not None else f"{leaf.field} in {told}"
    if op in ("exists", "missing"):
        return f"{leaf.field} {'present' if op == 'exists' else 'missing'}"
    if leaf.regex is not None:
        found = _words_of(leaf.regex)
        if found:
            return f"{leaf.field} with {one_of(found)}"
        return f"{leaf.field} fits {name}" if name else f"{leaf.field} matching the rule's pattern"
    if leaf.in_ is not None:
        return f"{leaf.field} is {one_of([str(value) for value in leaf.in_])}"
    value = leaf.equals if op == "equals" else leaf.contains
    return f"{leaf.field} {'is' if op == 'equals' else 'contains'} {value}"


_WORDS = re.compile(r"^[\w .&'/+-]+$")


def _words_of(pattern: str) -> list[str]:
    """The words a regular expression looks for, when it is a plain alternation of them (``\\b(vp|head of)\\b``,
    ``^ceo$``); none for anything cleverer, which no salesperson should have to read."""
    plain = re.sub(r"\\b|\^|\$|\(\?i\)|\(\?:", "", pattern).strip("()")
    parts = [part.strip().replace("\\s+", " ").replace("\\s", " ").replace("\\", "") for part in plain.split("|")]
    return parts if parts and all(part and _WORDS.match(part) for part in parts) else []


def one_of(values: Sequence[str]) -> str:
    if len(values) == 1:
        return values[0]
    return f"{', '.join(values[:-1])} or {values[-1]}"


def _shown(bound: float | datetime) -> str:
    if isinstance(bound, datetime):
        return bound.date().isoformat() if bound == bound.replace(hour=0, minute=0, second=0, microsecond=0) \
            else bound.isoformat()
    return f"{bound:g}"


def days_text(days: float) -> str:
    return "1 day" if days == 1 else f"{days:g} days"
