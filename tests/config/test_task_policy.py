"""Task triggers and texts, and the write-back values a score card turns into."""

from __future__ import annotations

from datetime import UTC, datetime

from leadpulse.core.config.tenant import Output, TaskPolicy, WritebackConfig
from leadpulse.core.engine.scoring import Contribution, Quadrant, ScoreCard, StatusChange
from leadpulse.core.model import Contact, ContactKind, Lifecycle

NOW = datetime(2025, 6, 1, tzinfo=UTC)
BANDS = ["unqualified", "intermediate", "qualified"]
CARD = ScoreCard(
    "c1", NOW, 12.5, {"fit": 7.0, "engagement": 5.5}, "qualified", "B", Quadrant.FOLLOW_UP_NOW,
    (Contribution("pricing", "engagement", 12, 2, "viewed pricing"), Contribution("vp", "fit", 7, 1, "title is VP")),
    None,
)
POLICY = TaskPolicy(on_bands=("qualified",), on_statuses=(Lifecycle.SQL,))


def test_entering_a_band_from_below_calls_for_a_task() -> None:
    assert POLICY.trigger(BANDS, "intermediate", CARD.band, None) == "band:qualified"
    assert POLICY.trigger(BANDS, None, CARD.band, None) == "band:qualified"


def test_staying_in_a_band_calls_for_nothing() -> None:
    assert POLICY.trigger(BANDS, "qualified", CARD.band, None) is None


def test_a_band_name_from_older_rules_counts_as_below() -> None:
    assert POLICY.trigger(BANDS, "hot", CARD.band, None) == "band:qualified"


def test_a_status_change_to_a_trigger_status_calls_for_a_task() -> None:
    change = StatusChange(Lifecycle.MQL, Lifecycle.SQL, "salesqualifiedlead")
    assert POLICY.trigger(BANDS, "qualified", CARD.band, change) == "status:sql"


def test_a_move_to_the_status_set_last_calls_for_no_second_task() -> None:
    change = StatusChange(Lifecycle.MQL, Lifecycle.SQL, "salesqualifiedlead")
    assert POLICY.trigger(BANDS, "qualified", CARD.band, change, last_status="sql") is None
    assert POLICY.trigger(BANDS, "qualified", CARD.band, change, last_status="mql") == "status:sql"


def test_a_disabled_policy_calls_for_nothing() -> None:
    assert TaskPolicy(enabled=False, on_bands=("qualified",)).trigger(BANDS, None, CARD.band, None) is None


def test_subject_and_body_say_who_and_why() -> None:
    person = Contact("c1", ContactKind.CONTACT, NOW, name="Ann Lee", email="ann@acme.io")
    subject, body = TaskPolicy().render(person, CARD)
    assert subject == "Follow up: Ann Lee scored 12.5 (qualified): +12 viewed pricing (2 times); +7 title is VP"
    assert body == "Why: +12 viewed pricing (2 times); +7 title is VP"


def test_writeback_values_cover_only_the_mapped_outputs() -> None:
    writeback = WritebackConfig(properties={Output.SCORE: "lp_score", Output.QUADRANT: "lp_q", Output.REASONS: "lp_why"}, reasons=1)
    assert writeback.values_for(CARD) == {"lp_score": 12.5, "lp_q": "follow_up_now", "lp_why": "+12 viewed pricing (2 times)"}
