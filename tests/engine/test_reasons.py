"""The reasons text a score card gives: the largest contributions first, ties in rule order, no zero points."""

from __future__ import annotations

from datetime import UTC, datetime

from leadpulse.core.engine.rules import Quadrant
from leadpulse.core.engine.scoring import Contribution, ScoreCard


def card(*points: float) -> ScoreCard:
    contributions = tuple(Contribution(f"r{i}", "fit", p, 1, f"rule {i}") for i, p in enumerate(points))
    return ScoreCard("c1", datetime(2025, 1, 1, tzinfo=UTC), sum(points), {"fit": sum(points)}, "cold",
                     None, next(iter(Quadrant)), contributions, None)


def test_reasons_keep_rule_order_among_equal_weights_and_leave_out_zero_points() -> None:
    assert card(2, 0, -5, 5, 2).reasons(4) == ["-5 rule 2", "+5 rule 3", "+2 rule 0", "+2 rule 4"]
    assert card(0, 3, 0).reasons(3) == ["+3 rule 1"]


def test_a_reason_reads_as_its_own_contribution_says_after_equal_ones_of_other_types() -> None:
    from decimal import Decimal

    def reason(points, occurrences) -> str:
        one = Contribution("r0", "fit", points, occurrences, "rule 0")
        return ScoreCard("c1", datetime(2025, 1, 1, tzinfo=UTC), 1.0, {"fit": 1.0}, "cold", None,
                         next(iter(Quadrant)), (one,), None).reasons(1)[0]

    assert [reason(1.5, 2), reason(Decimal("1.50"), 2), reason(1.5, 2.0), reason(1.5, 2)] == [
        "+1.5 rule 0 (2 times)", "+1.50 rule 0 (2 times)", "+1.5 rule 0 (2.0 times)",
        "+1.5 rule 0 (2 times)"]
