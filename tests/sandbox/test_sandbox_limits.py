"""Rate-limit windows on injected clocks."""
from leadpulse.sandbox.limits import Limits, ManualClock, ScaledClock, Window


def test_window_refuses_then_frees_as_calls_age_out():
    clock = ManualClock()
    limits = Limits([Window("TEN", 2, 10)], clock)
    assert [limits.admit("a").allowed for _ in range(3)] == [True, True, False]
    clock.advance(10.1)
    assert limits.admit("a").allowed


def test_refusal_says_which_window_and_when_to_retry():
    clock = ManualClock()
    limits = Limits([Window("TEN", 1, 10), Window("DAY", 100, 86_400)], clock)
    limits.admit("a")
    clock.advance(4)
    verdict = limits.admit("a")
    assert verdict.refused_by.name == "TEN" and 5.9 < verdict.retry_after < 6.1
    assert verdict.state("DAY").used == 1


def test_windows_cover_only_their_routes_and_charge_costs():
    limits = Limits([Window("SEARCH", 5, 1, routes=frozenset({"search"}), costs={"search": 5})], ManualClock())
    assert limits.admit("list").allowed and limits.admit("search").allowed
    assert not limits.admit("search").allowed


def test_disabled_limits_count_but_never_refuse():
    limits = Limits([Window("TEN", 1, 10)], ManualClock(), enabled=False)
    verdicts = [limits.admit("a") for _ in range(3)]
    assert all(v.allowed for v in verdicts) and verdicts[-1].state("TEN").used == 3


def test_scaled_clock_runs_faster_than_the_wall():
    clock = ScaledClock(1000)
    start = clock.now()
    while clock.now() - start < 1:  # one CRM second passes in about a real millisecond
        pass
    assert clock.time_scale == 1000


def test_tune_changes_a_limit():
    limits = Limits([Window("TEN", 1, 10)], ManualClock())
    limits.tune("TEN", limit=3)
    assert all(limits.admit("a").allowed for _ in range(3))


def test_units_spent_by_another_client_are_refused_to_this_one_until_the_window_renews():
    clock = ManualClock()
    limits = Limits([Window("DAY", 100, 86_400, resets_at=50)], clock)
    limits.admit("a")
    limits.spend("DAY", 10)
    assert limits.usage("DAY").used == 11
    limits.spend("DAY")  # all that is left
    assert limits.usage("DAY").remaining == 0 and not limits.admit("a").allowed
    clock.advance(50)  # the day's end
    assert limits.admit("a").allowed and limits.usage("DAY").used == 1
