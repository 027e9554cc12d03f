"""What scoring gives: a contact's `ScoreCard`, the `Contribution` of each rule that fired, a `StatusChange`, and
how they read as text (reasons, points shown as the engine rounds them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from leadpulse.core.engine.rules import Quadrant
from leadpulse.core.engine.wording import days_text
from leadpulse.core.model import Lifecycle

__all__ = [
    "CardColumns", "Contribution", "ScoreCard", "StatusChange", "bent_notes", "round_half_up", "shown_points",
    "top_reasons",
]


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one rule added to one contact's score (negative points take away).

    For an engagement rule, what bent its count or its points: `matched`, the occurrences (or days, or sessions)
    that matched when fewer counted (a cap on occurrences, a threshold, ``once``); `cap`, the rule's
    ``max_points`` when it bound; `full`, `age_days` and `half_life_days` when its points decayed: what they were
    worth undecayed, how old its newest counted occurrence is, and the half-life.
    """

    rule_id: str
    axis: str
    points: float
    occurrences: int
    detail: str
    matched: int | None = None
    cap: float | None = None
    full: float | None = None
    age_days: float | None = None
    half_life_days: float | None = None

    def text(self) -> str:
        """The contribution as a reason reads it: ``+5 clicked a link (5 of 7 counted, capped at 5)``, ``+0.6 of 5,
        form filled 135 days ago, half-life 45 days``."""
        return _reason(self)


@dataclass(frozen=True, slots=True)
class ScoreCard:
    """One contact's score at `as_of`, with the contribution of every rule that fired, in rule order."""

    contact_id: str
    as_of: datetime
    total: float
    axes: Mapping[str, float]
    band: str
    grade: str | None
    #: None for a tenant scoring on a single axis
    quadrant: Quadrant | None
    contributions: tuple[Contribution, ...]
    valid_until: datetime | None
    #: the lifecycle transitions (by their place in the tenant's list) whose conditions on the contact's fields
    #: (``when``) and on an event (``after``) hold at `as_of`
    events: frozenset[int] = frozenset()

    def reasons(self, n: int = 3) -> list[str]:
        """The `n` largest contributions as short text, e.g. ``"+10 visited pricing page x2"``."""
        return top_reasons(self.contributions, n)


class CardColumns(Protocol):
    """The fields of many cards as lists, element i of each being card i's (see
    `leadpulse.core.engine.columnar.CardFields`): what is read of many cards at once without building them."""

    @property
    def totals(self) -> list[float]: ...

    @property
    def axes(self) -> dict[str, list[float]]: ...

    @property
    def bands(self) -> list[str]: ...

    @property
    def grades(self) -> list[str | None]: ...

    @property
    def quadrants(self) -> list[str | None]:
        """Each card's quadrant by its value."""

    @property
    def events(self) -> list[frozenset[int]]: ...

    def reasons(self, places: Sequence[int], n: int) -> list[list[str]]:
        """`ScoreCard.reasons` of the cards at `places`."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A lifecycle move the engine asks for: from the contact's current stage (None if unset or unmapped)."""

    frm: Lifecycle | None
    to: Lifecycle
    crm_value: str


def top_reasons(contributions: Sequence[Contribution], n: int) -> list[str]:
    """The `n` largest of a card's `contributions` (in rule order) as short text (see `ScoreCard.reasons`)."""
    # reverse keeps equal weights in rule order, as a stable sort does; a zero ranks last, so it can only be among
    # the first `n` when fewer than `n` count
    ranked = sorted(contributions, key=_weight, reverse=True)
    return [_reason(c) for c in ranked[:n] if c.points]


def _weight(contribution: Contribution) -> float:
    return abs(contribution.points)


def _reason(contribution: Contribution) -> str:
    held = _BY_OBJECT.get(id(contribution))
    if held is not None and held[0] is contribution:
        return held[1]
    # Only as the engine makes them: equal points or counts of other types (2 and 2.0, 1.5 and Decimal("1.50"))
    # read otherwise; and not a decayed one, which tells its own age, met once.
    plain = contribution.points.__class__ is float and contribution.occurrences.__class__ is int \
        and contribution.age_days is None
    text = _REASONS.get(contribution) if plain else None
    if text is None:
        text = _reason_text(contribution)
        if plain and len(_REASONS) < _REASONS_LIMIT:
            _REASONS[contribution] = text
    else:  # met before: likely an object handed to many cards
        if len(_BY_OBJECT) >= _REASONS_LIMIT:
            _BY_OBJECT.clear()
        _BY_OBJECT[id(contribution)] = (contribution, text)
    return text


def _reason_text(c: Contribution) -> str:
    points = shown_points(c.points)
    if c.full is not None and c.age_days is not None:
        times = f" {c.occurrences} times, the last" if c.occurrences > 1 else ""
        age = days_text(round(c.age_days))
        text = (f"{points} of {shown_points(c.full, sign=False)}, {c.detail}{times} {age} ago, "
                f"half-life {days_text(c.half_life_days or 0)}")
    else:
        text = f"{points} {c.detail}"
    notes = bent_notes(c.occurrences, c.matched, c.cap)
    if c.occurrences > 1 and c.full is None and not (c.matched is not None and c.matched != c.occurrences):
        notes.insert(0, f"{c.occurrences} times")
    return f"{text} ({', '.join(notes)})" if notes else text


def bent_notes(occurrences: int, matched: int | None, cap: float | None) -> list[str]:
    """What bent a row's count or points, as words: occurrences a cap or threshold left out, and a cap on points."""
    notes = []
    if matched is not None and matched != occurrences:
        notes.append(f"{occurrences} of {matched} counted")
    if cap is not None:
        notes.append(f"capped at {shown_points(cap, sign=False)}")
    return notes


def shown_points(points: float, *, sign: bool = True) -> str:
    """Points as shown to people: at most 2 decimals, half up (0.625 shows as 0.63), no trailing zeros."""
    return format(round_half_up(points), "+g" if sign else "g")


def round_half_up(value: float) -> float:
    """`value` to 2 decimals, a tie in its decimal text rounding away from zero (round() rounds 0.625 to 0.62, the
    even neighbour); as fast as round() when there is no tie."""
    rounded = round(value, 2)
    if rounded == value:  # no more than 2 decimals already: most sums of points
        return rounded
    text = repr(value)
    point = text.find(".")
    if point >= 0 and len(text) - point == 4 and text[-1] == "5" and "e" not in text:
        rounded = round(value + (0.001 if value > 0 else -0.001), 2)
    return rounded


#: Reasons as text, remembered per contribution: writing back reasons for every card a rescore changes meets the
#: same few contributions over and over.
_REASONS: dict[Contribution, str] = {}
_REASONS_LIMIT = 100_000
#: ... and by the very object, for the contributions the engines hand to many cards: found by identity, without
#: hashing ten fields. Each entry holds its object, so no other object can take its id while it is here.
_BY_OBJECT: dict[int, tuple[Contribution, str]] = {}
