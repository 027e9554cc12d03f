from datetime import UTC, datetime, timedelta

import pytest
from support import metric

from leadpulse.connectors.budget import RateBudget, Window
from leadpulse.connectors.retry import ApiCaller, Failure, FailureKind, RetrySettings, retry_after_seconds
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import CallStats, JournaledCall
from leadpulse.core.errors import AuthError, QuotaExhausted, TransientError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_budget(*windows):
    return RateBudget(list(windows), clock=ManualClock(T0))


def test_budget_lets_a_window_full_of_calls_through_without_waiting():
    budget = make_budget(Window(5, 10))
    for _ in range(5):
        with budget.call():
            pass
    assert budget.clock.slept == []


def test_budget_waits_until_the_oldest_call_leaves_the_window():
    budget = make_budget(Window(2, 10))
    for _ in range(2):
        with budget.call():
            budget.clock.advance(1)
    with budget.call():
        pass
    # the first call ended at t=1, so its slot frees at t=11; the third call starts at t=2
    assert budget.clock.slept == [9]


def test_budget_never_exceeds_the_window_over_many_calls():
    budget = make_budget(Window(10, 10))
    starts = []
    for _ in range(55):
        with budget.call():
            starts.append(budget.clock.monotonic())
            budget.clock.advance(0.05)
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 10


def test_scoped_window_counts_only_its_scope():
    budget = make_budget(Window(100, 10), Window(1, 1, scope="search"))
    with budget.call("search"):
        pass
    with budget.call("default"):
        pass
    assert budget.clock.slept == []
    with budget.call("search"):
        pass
    assert budget.clock.slept == [1]


def test_pause_holds_every_call_for_the_given_time():
    budget = make_budget(Window(100, 10))
    budget.pause(3)
    with budget.call():
        pass
    assert budget.clock.slept == [3]


class Boom(Exception):
    def __init__(self, status, retry_after=None):
        super().__init__(f"status {status}")
        self.status = status
        self.retry_after = retry_after


def classify(exc):
    status = exc.status
    if status == 429 or status >= 500 or status == 0:
        return Failure(FailureKind.RETRY, status, str(exc), exc.retry_after)
    if status == 401:
        return Failure(FailureKind.AUTH, status, "token refused: check ACME_TOKEN")
    if status == 403:
        return Failure(FailureKind.QUOTA, status, "daily allowance spent")
    return Failure(FailureKind.RECORD, status, str(exc))


def make_caller(attempts=4):
    return ApiCaller("acme", classify, make_budget(Window(100, 10)), CallStats(), RetrySettings(attempts=attempts))


def failing(*statuses, result="ok"):
    queue = list(statuses)

    def fn():
        if queue:
            raise queue.pop(0)
        return result

    return fn


def test_caller_retries_429_honouring_retry_after_then_succeeds():
    caller = make_caller()
    assert caller.call(failing(Boom(429, retry_after=7), Boom(503))) == "ok"
    assert caller.budget.clock.slept[0] == 7
    assert caller.stats.by_status == {429: 1, 503: 1, 200: 1}
    assert caller.stats.rate_limited == 1


def test_caller_gives_up_with_transient_error_after_its_attempts():
    caller = make_caller(attempts=3)
    with pytest.raises(TransientError, match="tenant 'acme': gave up after 3 attempts"):
        caller.call(failing(Boom(500), Boom(500), Boom(500)))
    assert caller.stats.total == 3


def test_caller_stops_at_once_on_auth_and_quota():
    with pytest.raises(AuthError, match="check ACME_TOKEN"):
        make_caller().call(failing(Boom(401)))
    with pytest.raises(QuotaExhausted):
        make_caller().call(failing(Boom(403)))


def test_caller_hands_a_record_error_back_unchanged_without_retrying():
    caller = make_caller()
    with pytest.raises(Boom):
        caller.call(failing(Boom(400)))
    assert caller.stats.total == 1


def test_seven_429s_without_retry_after_wait_on_the_scale_of_the_window_not_of_minutes():
    caller = make_caller(attempts=8)
    assert caller.call(failing(*[Boom(429)] * 7)) == "ok"
    waits = caller.budget.clock.slept
    assert len(waits) == 7
    assert max(waits) <= 10  # the longest window the call counts against
    assert sum(waits) < 40  # 0.5, 1, 2, 4, 8, 10, 10 and jitter; uncapped backoff waited 61 s or more


def test_a_scope_with_only_a_short_window_backs_off_no_longer_than_it():
    caller = ApiCaller("acme", classify, make_budget(Window(5, 2, scope="burst")), CallStats(), RetrySettings())
    caller.call(failing(*[Boom(503)] * 6), scope="burst")
    assert max(caller.budget.clock.slept) <= 2


class Journal:
    """A `CallJournal` in memory, standing for the store another process left behind."""

    def __init__(self, calls=()):
        self.calls = list(calls)
        self.noted = []

    def sent(self, scope, at):
        self.noted.append([scope, at, None])
        return len(self.noted) - 1

    def answered(self, mark, at):
        self.noted[mark][2] = at

    def since(self, moment):
        return [call for call in self.calls if call.sent_at >= moment]


def answered_ago(seconds, scope="default"):
    at = T0 - timedelta(seconds=seconds)
    return JournaledCall(scope, at - timedelta(seconds=0.2), at)


def test_a_fresh_budget_counts_the_calls_another_process_made_in_the_window():
    journal = Journal([answered_ago(3)] * 2 + [answered_ago(30)])
    caller = ApiCaller("acme", classify, make_budget(Window(2, 10)), CallStats(journal=journal), RetrySettings())
    caller.call(failing())
    assert caller.budget.clock.slept == [7]  # until the calls answered 3 s ago leave the 10 s window


def test_a_call_killed_in_flight_counts_as_answered_when_the_next_process_starts():
    journal = Journal([JournaledCall("default", T0 - timedelta(seconds=1), None)])
    caller = ApiCaller("acme", classify, make_budget(Window(1, 10)), CallStats(journal=journal), RetrySettings())
    caller.call(failing())
    assert caller.budget.clock.slept == [10]


class BusyClock(ManualClock):
    """A clock read on a busy machine: a second passes each time an age is measured."""

    def since(self, moment):
        self.advance(1)
        return super().since(moment)


def test_calls_recalled_while_time_passes_keep_their_slots_until_the_crm_frees_them():
    journal = Journal([answered_ago(3)] * 2)
    budget = RateBudget([Window(2, 10)], clock=BusyClock(T0))
    caller = ApiCaller("acme", classify, budget, CallStats(journal=journal), RetrySettings())
    caller.call(failing())
    # answered 3 s before T0, the calls leave the window 7 s after it, however long the recall took
    assert budget.clock.monotonic() >= 7


def test_recalled_calls_weigh_only_on_the_windows_of_their_scope():
    journal = Journal([answered_ago(0.5, "search")] * 4)
    budget = make_budget(Window(100, 10), Window(4, 1, scope="search"))
    caller = ApiCaller("acme", classify, budget, CallStats(journal=journal), RetrySettings())
    caller.call(failing())
    assert budget.clock.slept == []
    caller.call(failing(), scope="search")
    assert budget.clock.slept == [0.5]


def test_a_budget_already_in_use_is_not_told_its_own_calls_again():
    budget = make_budget(Window(2, 10))
    first = ApiCaller("acme", classify, budget, CallStats(journal=Journal()), RetrySettings())
    first.call(failing())
    ApiCaller("acme", classify, budget, CallStats(journal=Journal([answered_ago(0)] * 2)), RetrySettings())
    with budget.call():
        pass
    assert budget.clock.slept == []


def test_each_call_is_noted_in_the_journal_when_sent_and_when_answered():
    journal = Journal()
    caller = ApiCaller("acme", classify, make_budget(Window(100, 10)), CallStats(journal=journal), RetrySettings())

    def slow():
        caller.budget.clock.advance(2)
        return "ok"

    caller.call(slow, scope="search")
    caller.call(failing(Boom(503)))
    assert [(scope, (answered - sent).total_seconds()) for scope, sent, answered in journal.noted] == [
        ("search", 2), ("default", 0), ("default", 0)]


def test_retry_after_reads_numeric_header_only():
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "x"}) is None
    assert retry_after_seconds(None) is None


def test_a_create_that_lost_its_answer_is_not_repeated():
    from leadpulse.core.errors import OutcomeUnknown

    caller = make_caller()
    with pytest.raises(OutcomeUnknown, match="unknown"):
        caller.call(failing(Boom(0)), idempotent=False)
    assert caller.stats.total == 1


def test_a_create_refused_with_429_is_retried():
    caller = make_caller()
    assert caller.call(failing(Boom(429)), idempotent=False) == "ok"
    assert caller.stats.by_status == {429: 1, 200: 1}


def test_every_answer_is_counted_in_the_api_call_metrics():
    from leadpulse.core.runtime import metrics

    def sample(status):
        return metric("leadpulse_api_calls_total", tenant="acme", crm="acme-crm", status=status)

    before = {s: sample(s) for s in ("429", "200")}
    stats = metrics.call_stats("acme-crm", "acme")
    caller = ApiCaller("acme", classify, make_budget(Window(100, 10)), stats, RetrySettings())
    caller.call(failing(Boom(429)))
    assert sample("429") == before["429"] + 1 and sample("200") == before["200"] + 1
