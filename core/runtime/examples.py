"""Running a tenant file's examples: each made-up contact scored as a sync scores it (the tenant's `Engine`, through
`decide`, with nothing saved before), and what it got set against what its example expects.

A difference reads as the example's expectation, what it got and why, so the rule at fault can be found::

    config/hubspot.yaml: example "VP at a target account": expected band qualified, got intermediate (score 9.5;
    the band qualified starts at 10)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leadpulse.core.config.examples import NO_MOVE, Example, Expectation
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.rules import ScoringConfig, Step
from leadpulse.core.engine.scoring import ActivityRow, Engine, ScoreCard, StatusChange
from leadpulse.core.runtime.decisions import decide, decisions_fingerprint


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """One example scored: its card, the status move the rules decided, and each way it differs from `expect`."""

    example: Example
    card: ScoreCard
    status: StatusChange | None
    differences: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.differences


@dataclass(frozen=True, slots=True)
class ExampleRun:
    """Every example of one tenant file, scored."""

    tenant: TenantConfig
    results: tuple[ExampleResult, ...]

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def failures(self) -> list[str]:
        """One line per difference, naming the tenant file and the example."""
        return [f'{self.tenant.source_path}: example "{result.example.name}": {difference}'
                for result in self.results for difference in result.differences]

    def summary(self) -> str:
        """``examples: 5 passed``, ``examples: 4 passed, 1 failed`` or ``examples: none``."""
        if not self.results:
            return "examples: none"
        return f"examples: {self.passed} passed" + (f", {self.failed} failed" if self.failed else "")


def run_examples(tenant: TenantConfig) -> ExampleRun:
    """Score each of the tenant's examples with its own rules, as of the example's moment."""
    engine = Engine(tenant.scoring)
    decisions = decisions_fingerprint(tenant, engine)
    results = []
    for n, example in enumerate(tenant.examples.cases, start=1):
        as_of = tenant.examples.moment(example)
        contact, activities = example.build(f"example-{n}", as_of)
        rows: list[ActivityRow] = [(a.contact_id, a.id, a.kind.value, a.occurred_at, a.vendor_type, a.attributes)
                                   for a in activities]
        decision = decide(tenant, engine, contact, engine.score_rows(contact, rows, as_of), None, decisions)
        found = differences(tenant.scoring, example.expect, decision.card, decision.status, contact.status)
        results.append(ExampleResult(example, decision.card, decision.status, tuple(found)))
    return ExampleRun(tenant, tuple(results))


def differences(scoring: ScoringConfig, expect: Expectation, card: ScoreCard, status: StatusChange | None,
                crm_status: str | None) -> list[str]:
    """Each way `card` and `status` differ from `expect`, as text."""
    found = [
        _score(expect, card),
        *(f"expected {axis} {number(points)}, got {number(card.axes[axis])}"
          for axis, points in (expect.axes or {}).items() if not _same(points, card.axes[axis])),
        _band(scoring, expect, card),
        _grade(scoring, expect, card),
        _quadrant(scoring, expect, card),
        _status(expect, card, status, crm_status),
    ]
    return [text for text in found if text]


def _score(expect: Expectation, card: ScoreCard) -> str | None:
    if expect.score is None or _same(expect.score, card.total):
        return None
    axes = ", ".join(f"{name} {number(points)}" for name, points in card.axes.items())
    return f"expected score {number(expect.score)}, got {number(card.total)} ({axes})"


def _band(scoring: ScoringConfig, expect: Expectation, card: ScoreCard) -> str | None:
    if expect.band is None or card.band == expect.band:
        return None
    why = _ladder(scoring.bands, "band", expect.band, card.band)
    return f"expected band {expect.band}, got {card.band} (score {number(card.total)}; {why})"


def _grade(scoring: ScoringConfig, expect: Expectation, card: ScoreCard) -> str | None:
    if expect.grade is None or card.grade == expect.grade:
        return None
    why = _ladder(scoring.grades or (), "grade", expect.grade, card.grade)
    axis = scoring.grade_axis
    return f"expected grade {expect.grade}, got {card.grade} ({axis} {number(card.axes[axis])}; {why})"


def _quadrant(scoring: ScoringConfig, expect: Expectation, card: ScoreCard) -> str | None:
    if expect.quadrant is None or card.quadrant == expect.quadrant:
        return None
    least = scoring.quadrant
    if least is None or card.quadrant is None:
        return f"expected quadrant {expect.quadrant.value}, got none (a tenant scoring on a single axis has none)"
    fit, engagement = number(card.axes["fit"]), number(card.axes["engagement"])
    return (f"expected quadrant {expect.quadrant.value}, got {card.quadrant.value} (fit {fit}, engagement "
            f"{engagement}; a contact fits from fit {number(least.fit)} and is interested from engagement "
            f"{number(least.engagement)})")


def _status(expect: Expectation, card: ScoreCard, status: StatusChange | None, crm_status: str | None) -> str | None:
    moved = status.to.value if status is not None else NO_MOVE
    if expect.status is None or moved == expect.status:
        return None
    grade = f", grade {card.grade}" if card.grade else ""
    standing = f"the contact's status is {crm_status!r}" if crm_status else "the contact has no status"
    quadrant = f", quadrant {card.quadrant.value}" if card.quadrant else ""
    return (f"expected status {expect.status}, got {moved} (score {number(card.total)}, band {card.band}{grade}"
            f"{quadrant}; {standing})")


def _ladder(steps: Sequence[Step], noun: str, expected: str, got: str | None) -> str:
    """Where the expected step of a band or grade ladder starts (when it lies above the one got) or ends."""
    names = [step.name for step in steps]
    at = names.index(expected)
    if got is not None and got in names and names.index(got) < at:
        step = steps[at]
        return f"the {noun} {expected} starts {'above' if step.above is not None else 'at'} {number(step.lower)}"
    following = steps[at + 1]
    return f"the {noun} {expected} ends {'at' if following.above is not None else 'below'} {number(following.lower)}"


def _same(expected: float, got: float) -> bool:
    """Equal at the 2 decimals the store keeps."""
    return round(expected, 2) == round(got, 2)


def number(value: float | None) -> str:
    """A score as people write it: ``9.5``, ``10``, ``-3.25``."""
    if value is None:
        return "none"
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
