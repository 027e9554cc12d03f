"""The ``scoring`` section of a tenant file: axes, rules, bands, grades, quadrant and lifecycle, validated once.

The condition language (fit rules' ``when`` and engagement rules' ``where``)::

    {field: title, equals: CEO}            text compares case-insensitively unless case_sensitive: true
    {field: country, in: [US, GB, DE]}
    {field: title, contains: student}
    {field: title, regex: "\\b(vp|head|chief)\\b"}
    {field: employees, range: {min: 50, below: 1000}}    min inclusive (or above, exclusive); below exclusive
                                                         (or max, inclusive)
    {field: signed, range: {min: 2025-01-01, below: 2026-01-01}}   dates, when the bounds are dates
    {field: project_start, age: {above: 90d}}    a date more than 90 days before the moment scored
    {field: go_live, ahead: {max: 6mo}}          a date at most six months after it
    {field: phone, exists: true}           present and not empty
    {field: company, missing: true}
    {all: [...]}  {any: [...]}  {not: {...}}

A field is a neutral name from the tenant's ``fields`` map (``title``), a contact attribute (``email``,
``opted_out``, ``status``, ``owner_id``, ``name``, ``kind``) or a vendor property as pulled
(``raw.hs_analytics_source``).
In ``where``, a field is an activity attribute (``url``), or ``vendor_type``.

A rule is one of three shapes, told apart by its keys: a fit rule has ``when``; an engagement rule has
``activity`` or ``vendor_type``; an inactivity rule has ``inactive_days``. An engagement rule scores per
occurrence, or per distinct day or session (``count: days``); ``min_occurrences: 5`` scores from the fifth on,
``once: true`` scores once when the rule fires, and ``unless_followed_by: {activity: deal_won, within_days: 2}``
drops an occurrence a later activity followed up. Wherever a rule asks for days
(``within_days``, ``half_life_days``...), a number is days and text a duration (``6w``, ``3mo``).

A lifecycle transition may also hold on the contact's fields (``when``, any fit condition) or on an event
(``after: {activity: deal_won}``), beside or instead of the score.

Bands and grades are ladders of steps, each starting at ``min`` (the score included) or ``above`` (excluded: "a
score that exceeds 10").
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from leadpulse.core.model import ActivityKind, Lifecycle, utc
from leadpulse.core.schedule import Days, Duration
from leadpulse.core.strict import Strict, refuse, show


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise refuse("text, a number, true or false", show(value))
    return value


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Scalar = Annotated[Any, BeforeValidator(_scalar)]
#: one value or a list of them, read as a tuple
Kinds = Annotated[tuple[ActivityKind, ...], BeforeValidator(_listed)]
Names = Annotated[tuple[str, ...], BeforeValidator(_listed)]
_ID = r"^[A-Za-z0-9_.:-]+$"
CONTACT_ATTRIBUTES = frozenset({"id", "email", "name", "owner_id", "status", "opted_out", "kind"})
ACTIVITY_ATTRIBUTES = frozenset({"id", "kind", "vendor_type"})


class Quadrant(StrEnum):
    """Where fit x engagement puts a contact, and what to do about it."""

    FOLLOW_UP_NOW = "follow_up_now"  # fits and is interested
    NURTURE = "nurture"  # fits, no interest yet
    QUALIFY = "qualify"  # interested, fit unknown or poor
    LEAVE = "leave"  # neither


def _bound(value: Any) -> Any:
    """A range's bound: a number, or a date (a YAML date, or ISO text such as 2025-01-31) as a UTC moment."""
    if isinstance(value, bool):
        raise refuse("a number or a date (2025-01-31)", show(value))
    if isinstance(value, int | float | datetime):
        return utc(value) if isinstance(value, datetime) else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            raise refuse("a number or a date (2025-01-31)", show(value)) from None
    return value


Bound = Annotated[float | datetime, BeforeValidator(_bound)]


class _Bounds(Strict):
    """Bounds on one side each: `min` (inclusive) or `above` (exclusive) below, `below` (exclusive) or `max`
    (inclusive) above."""

    @model_validator(mode="after")
    def _one_bound_each_side(self) -> Any:
        given = self.bounds()
        if "min" in given and "above" in given:
            raise refuse("either min (inclusive) or above (exclusive)", "both")
        if "below" in given and "max" in given:
            raise refuse("either below (exclusive) or max (inclusive)", "both")
        if not given:
            raise refuse("min, above, below or max", "none of them")
        return self

    def bounds(self) -> dict[str, Any]:
        """The bounds given, by name."""
        given = {name: getattr(self, name) for name in ("min", "above", "below", "max")}
        return {name: bound for name, bound in given.items() if bound is not None}


class Range(_Bounds):
    """Bounds on a number, or on a date when they are dates (``{min: 2025-01-01, below: 2026-01-01}``)."""

    min: Bound | None = None
    above: Bound | None = None
    below: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        kinds = {isinstance(bound, datetime) for bound in self.bounds().values()}
        if len(kinds) > 1:
            raise refuse("bounds that are all numbers or all dates", "a number and a date")
        return self

    @property
    def dated(self) -> bool:
        return any(isinstance(bound, datetime) for bound in self.bounds().values())


class Span(_Bounds):
    """Bounds on a span of time, in days or as durations (``{above: 90d}``, ``{max: 6mo}``)."""

    min: Days | None = Field(None, ge=0)
    above: Days | None = Field(None, ge=0)
    below: Days | None = Field(None, ge=0)
    max: Days | None = Field(None, ge=0)


_OPERATORS = ("equals", "in", "contains", "regex", "range", "age", "ahead", "exists", "missing")
#: the operators that read a date field against the moment a score is for
TIMED_OPERATORS = frozenset({"age", "ahead"})


class Leaf(Strict):
    field: str = Field(min_length=1)
    equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(None, alias="in", min_length=1)
    contains: str | None = None
    regex: str | None = None
    range: Range | None = None
    age: Span | None = None
    ahead: Span | None = None
    exists: bool | None = None
    missing: bool | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one_operator(self) -> Leaf:
        given = [op for op in _OPERATORS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(given) != 1:
            raise refuse(f"exactly one of {', '.join(_OPERATORS)}", ", ".join(given) or "none")
        if self.exists is False or self.missing is False:
            raise refuse("exists: true or missing: true (use the other one to negate)", "false")
        return self

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise refuse("a valid regular expression", f"{show(value)} ({exc})") from None
        return value

    def operator(self) -> str:
        return next(op for op in _OPERATORS if getattr(self, "in_" if op == "in" else op) is not None)

    @property
    def timed(self) -> bool:
        """Whether the leaf reads a date against the moment scored (``age``, ``ahead``)."""
        return self.age is not None or self.ahead is not None


class AllOf(Strict):
    all: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(Strict):
    any: tuple[Condition, ...] = Field(min_length=1)


class NotOf(Strict):
    not_: Condition = Field(alias="not")


def _condition_shape(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return "@" + key
    for tag, model in (("@all", AllOf), ("@any", AnyOf), ("@not", NotOf)):
        if isinstance(value, model):
            return tag
    return "@leaf"


Condition = Annotated[
    Annotated[Leaf, Tag("@leaf")] | Annotated[AllOf, Tag("@all")] | Annotated[AnyOf, Tag("@any")]
    | Annotated[NotOf, Tag("@not")],
    Discriminator(_condition_shape),
]
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def leaves(condition: Any) -> list[Leaf]:
    """Every leaf of a condition tree, left to right."""
    return [leaf for _, leaf in placed_leaves(condition)]


def placed_leaves(condition: Any, at: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Leaf]]:
    """Every leaf of a condition tree with its key path below the tree's root (``("all", 1)``)."""
    if isinstance(condition, Leaf):
        return [(at, condition)]
    if isinstance(condition, NotOf):
        return placed_leaves(condition.not_, (*at, "not"))
    key = "all" if isinstance(condition, AllOf) else "any"
    children = getattr(condition, key)
    return [pair for i, child in enumerate(children) for pair in placed_leaves(child, (*at, key, i))]


def _refuse_timed(condition: Any, at: tuple[str | int, ...]) -> None:
    """An activity's ``where`` reads no date against the moment scored: age and ahead are for contact fields."""
    for path, leaf in placed_leaves(condition) if condition is not None else ():
        if leaf.timed:
            raise refuse("a condition on the activity (age and ahead read a contact's date fields, in fit rules or "
                         "lifecycle transitions; compare an activity's dates with range)", leaf.operator(),
                         (*at, *path, leaf.operator()))


class RuleBase(Strict):
    id: str | None = Field(None, pattern=_ID)
    axis: str | None = None
    label: str | None = None
    points: float


class FitRule(RuleBase):
    """Points when the contact's fields meet a condition (counted once)."""

    when: Condition


class Counting(StrEnum):
    """What an engagement rule counts: each matching activity, or the distinct days (UTC) they fall on, or the
    distinct sessions (an activity's ``session_id``; one without counts by its day)."""

    OCCURRENCES = "occurrences"
    DAYS = "days"
    SESSIONS = "sessions"


class ActivityMatch(Strict):
    """An activity looked for: of these kinds or vendor types, meeting `where`, and with `within_days` no further
    away than that: after the occurrence it follows up (``unless_followed_by``), or before the moment scored (a
    lifecycle transition's ``after``)."""

    activity: Kinds | None = None
    vendor_type: Names | None = None
    where: Condition | None = None
    within_days: Days | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _names_what(self) -> ActivityMatch:
        if not self.activity and not self.vendor_type:
            raise refuse("an activity or a vendor_type (the activity looked for)", "neither")
        _refuse_timed(self.where, ("where",))
        return self

    def kinds(self) -> tuple[ActivityKind, ...]:
        return _as_tuple(self.activity)

    def vendor_types(self) -> tuple[str, ...]:
        return _as_tuple(self.vendor_type)


class EngagementRule(RuleBase):
    """Points per matching activity (or per distinct day or session, `count`), within caps, a window and decay.

    `within_days` and `expires_after_days` both drop an occurrence once it is that many days old (an activity
    exactly N days old no longer counts); `half_life_days` halves an occurrence's points every N days. With
    `max_occurrences` the newest occurrences count. `min_occurrences` is a threshold: the rule scores nothing
    until that many count, and then from that one on (the fifth page of ``min_occurrences: 5`` is the first to
    earn). `once` gives `points` once when the rule fires instead of per occurrence. `unless_followed_by` drops an
    occurrence that a later activity followed up (a cart abandoned, then bought). `max_points` caps the size of
    the rule's total, whichever its sign.
    """

    activity: Kinds | None = None
    vendor_type: Names | None = None
    where: Condition | None = None
    count: Counting = Counting.OCCURRENCES
    min_occurrences: int | None = Field(None, ge=1)
    once: bool = False
    unless_followed_by: ActivityMatch | None = None
    max_points: float | None = Field(None, gt=0)
    max_occurrences: int | None = Field(None, ge=1)
    within_days: Days | None = Field(None, gt=0)
    expires_after_days: Days | None = Field(None, gt=0)
    half_life_days: Days | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _threshold_within_cap(self) -> EngagementRule:
        _refuse_timed(self.where, ("where",))
        if self.min_occurrences and self.max_occurrences and self.min_occurrences > self.max_occurrences:
            raise refuse(f"a min_occurrences of at most max_occurrences ({self.max_occurrences})",
                         str(self.min_occurrences), ("min_occurrences",))
        return self

    def kinds(self) -> tuple[ActivityKind, ...]:
        return _as_tuple(self.activity)

    def vendor_types(self) -> tuple[str, ...]:
        return _as_tuple(self.vendor_type)

    def horizon_days(self) -> float | None:
        limits = [days for days in (self.within_days, self.expires_after_days) if days is not None]
        return min(limits) if limits else None


class InactivityRule(RuleBase):
    """Points (usually negative) once a contact has had no matching activity for `inactive_days` days or more.

    A contact with no matching activity at all counts as inactive unless `count_never_active` is false.
    """

    inactive_days: Days = Field(gt=0)
    activity: Kinds | None = None
    count_never_active: bool = True

    def kinds(self) -> tuple[ActivityKind, ...]:
        return _as_tuple(self.activity)


def _as_tuple(value: tuple[Any, ...] | None) -> tuple[Any, ...]:
    return value or ()


def _rule_shape(value: Any) -> str:
    if isinstance(value, dict):
        if "inactive_days" in value:
            return "@inactivity"
        return "@engagement" if "activity" in value or "vendor_type" in value else "@fit"
    if isinstance(value, InactivityRule):
        return "@inactivity"
    return "@engagement" if isinstance(value, EngagementRule) else "@fit"


Rule = Annotated[
    Annotated[FitRule, Tag("@fit")] | Annotated[EngagementRule, Tag("@engagement")]
    | Annotated[InactivityRule, Tag("@inactivity")],
    Discriminator(_rule_shape),
]


class Axis(Strict):
    """A named score axis: its weight in the total and, only if the tenant wants one, a floor and a cap."""

    weight: float = 1.0
    min: float | None = None
    max: float | None = None


class Step(Strict):
    """One rung of a band or grade ladder: scores from `min` (inclusive) or `above` (exclusive: "a score that
    exceeds 10") up to where the next rung starts. `below` (exclusive) or `max` (inclusive) may say where it ends,
    which must be where the next one starts: ``max: 10`` before ``above: 10``, ``below: 10`` before ``min: 10``."""

    name: str = Field(min_length=1)
    min: float | None = None
    above: float | None = None
    below: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound_each_side(self) -> Step:
        if self.min is not None and self.above is not None:
            raise refuse("either min (inclusive) or above (exclusive)", "both")
        if self.below is not None and self.max is not None:
            raise refuse("either below (exclusive) or max (inclusive)", "both")
        return self

    @property
    def lower(self) -> float | None:
        return self.min if self.min is not None else self.above

    @property
    def upper(self) -> float | None:
        return self.below if self.below is not None else self.max


class QuadrantThresholds(Strict):
    """Inclusive minimums on the fit and engagement axes that count as 'fits' and 'is interested'."""

    fit: float
    engagement: float


class Transition(Strict):
    """A lifecycle stage a contact qualifies for when every given condition holds: on the score (`min_total`,
    bands, grades, quadrants, axes), on the contact's fields (`when`, any fit condition), or on an event (`after`:
    a matching activity at or before the moment scored, within `within_days` of it if given: a won deal makes a
    customer)."""

    to: Lifecycle
    when: Condition | None = None
    after: ActivityMatch | None = None
    min_total: float | None = None
    min_band: str | None = None
    bands: tuple[str, ...] | None = None
    grades: tuple[str, ...] | None = None
    quadrants: tuple[Quadrant, ...] | None = None
    min_axis: dict[str, float] | None = None


class LifecycleConfig(Strict):
    """The neutral lifecycle mapped onto the CRM's values, and the transitions the score drives.

    `status_order` lists the CRM's values lowest first, so a value outside `values` (HubSpot's ``opportunity``)
    still ranks; a CRM value that ranks nowhere is left alone.
    """

    values: dict[Lifecycle, str]
    status_order: tuple[str, ...] | None = None
    allow_demotion: bool = False
    transitions: tuple[Transition, ...] = ()


def _default_axes() -> dict[str, Axis]:
    return {"fit": Axis(), "engagement": Axis()}


class ScoringConfig(Strict):
    """Everything that decides a score; the engine's fingerprint is a hash of this model."""

    axes: dict[str, Axis] = Field(default_factory=_default_axes)
    rules: tuple[Rule, ...] = Field(min_length=1)
    bands: tuple[Step, ...] = Field(min_length=1)
    grades: tuple[Step, ...] | None = None
    #: where "fits" and "is interested" start; needed with the fit and engagement axes, none with a single axis
    quadrant: QuadrantThresholds | None = None
    lifecycle: LifecycleConfig | None = None
    #: how often a score with decaying points is rechecked (decay moves it a little all the time)
    decay_recheck: Duration = timedelta(days=1)

    @model_validator(mode="after")
    def _consistent(self) -> ScoringConfig:
        _check_axes(self)
        _check_rule_ids(self.rules)
        _check_ladder(self.bands, "bands", "band")
        if self.grades is not None:
            _check_ladder(self.grades, "grades", "grade")
        if self.lifecycle is not None:
            _check_lifecycle(self.lifecycle, self)
        return self

    def rule_ids(self) -> tuple[str, ...]:
        """Each rule's id: the one given, or one derived from what the rule reads, unique within the file."""
        taken = {rule.id for rule in self.rules if rule.id}
        ids: list[str] = []
        for rule in self.rules:
            if rule.id:
                ids.append(rule.id)
                continue
            base, n = _derived_id(rule), 1
            candidate = base
            while candidate in taken:
                n += 1
                candidate = f"{base}-{n}"
            taken.add(candidate)
            ids.append(candidate)
        return tuple(ids)

    @property
    def single_axis(self) -> str | None:
        """The one axis of a tenant that scores on a single axis (every rule on it, no quadrant), else None."""
        return next(iter(self.axes)) if len(self.axes) == 1 else None

    @property
    def grade_axis(self) -> str:
        """The axis grades read: fit, or the single axis."""
        return self.single_axis or "fit"

    def rule_axis(self, rule: FitRule | EngagementRule | InactivityRule) -> str:
        return rule.axis or self.single_axis or ("fit" if isinstance(rule, FitRule) else "engagement")

    def fields_read(self) -> set[str]:
        """Every contact field the fit rules read (``raw.`` names included)."""
        return {leaf.field for rule in self.rules if isinstance(rule, FitRule) for leaf in leaves(rule.when)}


def _derived_id(rule: FitRule | EngagementRule | InactivityRule) -> str:
    if isinstance(rule, FitRule):
        first = leaves(rule.when)[0]
        return f"{first.field}-{first.operator()}"
    if isinstance(rule, InactivityRule):
        return f"inactive-{rule.inactive_days:g}d"
    return "+".join([*rule.kinds(), *rule.vendor_types()])


def _check_axes(config: ScoringConfig) -> None:
    if config.single_axis is not None:
        if config.quadrant is not None:
            raise refuse("no quadrant with a single axis (the quadrant crosses the fit and engagement axes)",
                         "a quadrant", ("quadrant",))
    else:
        for needed in ("fit", "engagement"):
            if needed not in config.axes:
                raise refuse(f"an axis named {needed} (grades and the quadrant read it), or a single axis",
                             "none", ("axes",))
        if config.quadrant is None:
            raise refuse("a quadrant: {fit: N, engagement: N}, the fit and engagement where 'fits' and 'is "
                         "interested' start (a tenant scoring on a single axis needs none)", "nothing", ("quadrant",))
    for index, rule in enumerate(config.rules):
        axis = config.rule_axis(rule)
        if axis not in config.axes:
            raise refuse(f"one of the axes {', '.join(config.axes)}", show(axis), ("rules", index, "axis"))


def _check_rule_ids(rules: tuple[Any, ...]) -> None:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise refuse("an id no other rule uses", show(rule.id), ("rules", index, "id"))
        if rule.id:
            seen.add(rule.id)


def _check_ladder(steps: tuple[Step, ...], key: str, noun: str) -> None:
    """Lower bounds, lowest first, every score in exactly one step: no gap, no overlap."""
    names: set[str] = set()
    for index, step in enumerate(steps):
        if step.name in names:
            raise refuse(f"a {noun} name used once", show(step.name), (key, index, "name"))
        names.add(step.name)
        if index == 0:
            if step.lower is not None:
                raise refuse(f"no min or above on the first {noun} (it takes every score below the next one)",
                             show(step.lower), (key, 0, "min" if step.min is not None else "above"))
        else:
            _check_rung(steps[index - 1], step, (key, index), noun)
    last = steps[-1]
    if last.upper is not None:
        bound = "below" if last.below is not None else "max"
        raise refuse(f"no {bound} on the last {noun} (it takes every score from where it starts up)",
                     show(last.upper), (key, len(steps) - 1, bound))


def _check_rung(previous: Step, step: Step, at: tuple[str | int, ...], noun: str) -> None:
    lower, bound = step.lower, "min" if step.min is not None else "above"
    if lower is None:
        raise refuse(f"a min or above (only the first {noun} has neither)", "nothing", (*at, "min"))
    if previous.lower is not None and lower <= previous.lower:
        raise refuse(f"a {bound} above {previous.lower:g} ({noun}s go from lowest to highest)", show(lower),
                     (*at, bound))
    upper = previous.upper
    if upper is None:
        return
    if lower != upper:
        trouble = "a gap" if lower > upper else "an overlap"
        raise refuse(f"{upper:g}, where {noun} {previous.name!r} ends", f"{lower:g} ({trouble})", (*at, bound))
    if (previous.max is not None) != (step.above is not None):  # 10 in both, or in neither
        ends = f"max: {upper:g} (so {upper:g} is in it)" if previous.max is not None else \
            f"below: {upper:g} (so {upper:g} is not in it)"
        wanted = "above" if previous.max is not None else "min"
        trouble = "an overlap" if previous.max is not None else "a gap"
        raise refuse(f"{wanted}: {upper:g}, since {noun} {previous.name!r} ends with {ends}",
                     f"{bound}: {lower:g} ({trouble} at {upper:g})", (*at, bound))


def _check_lifecycle(lifecycle: LifecycleConfig, config: ScoringConfig) -> None:
    bands = [step.name for step in config.bands]
    grades = [step.name for step in config.grades or ()]
    for index, transition in enumerate(lifecycle.transitions):
        at = ("lifecycle", "transitions", index)
        if transition.to not in lifecycle.values:
            raise refuse(f"a stage mapped under lifecycle.values ({', '.join(lifecycle.values)})",
                         show(transition.to.value), (*at, "to"))
        for name in [transition.min_band, *(transition.bands or ())]:
            if name is not None and name not in bands:
                raise refuse(f"one of the bands {', '.join(bands)}", show(name),
                             (*at, "bands" if transition.bands else "min_band"))
        for name in transition.grades or ():
            if name not in grades:
                raise refuse(f"one of the grades {', '.join(grades) or '(no grades configured)'}", show(name),
                             (*at, "grades"))
        if transition.quadrants and config.quadrant is None:
            raise refuse("no quadrants (a single axis has no quadrant)", ", ".join(transition.quadrants),
                         (*at, "quadrants"))
        for axis in transition.min_axis or {}:
            if axis not in config.axes:
                raise refuse(f"one of the axes {', '.join(config.axes)}", show(axis), (*at, "min_axis"))
    _check_status_order(lifecycle)


def _check_status_order(lifecycle: LifecycleConfig) -> None:
    if lifecycle.status_order is None:
        return
    positions = []
    for _, value in sorted(lifecycle.values.items(), key=lambda item: item[0].rank):
        if value not in lifecycle.status_order:
            raise refuse(f"every mapped value in status_order, {value!r} included", "it absent",
                         ("lifecycle", "status_order"))
        positions.append(lifecycle.status_order.index(value))
    if positions != sorted(positions):
        raise refuse("the mapped values in lifecycle order (subscriber, lead, mql, sql, customer)", "another order",
                     ("lifecycle", "status_order"))
