"""One retry policy for every connector: each connector only says how to classify its SDK's exceptions.

``classify(exc) -> Failure`` is the single per-connector function that decides whether a failure is worth
retrying (429, 5xx, dropped connection, timeout), ends the tenant's run (401 after a refresh, daily allowance),
or belongs to the record (other 4xx). `call` runs one API call inside the tenant's `RateBudget` and retries
with tenacity: Retry-After first, else exponential backoff with jitter, never longer than the longest rate window
the call counts against (a 429 that names no wait has waited out the CRM's window by then), all on the injected
clock. Every call is noted in the run's `CallJournal` as it is sent and answered, and a fresh budget is told the
calls the journal kept of the last minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import Enum
from typing import TypeVar

import tenacity

from leadpulse.connectors.budget import RateBudget
from leadpulse.core.contract import CallStats
from leadpulse.core.errors import AuthError, OutcomeUnknown, QuotaExhausted, TransientError

T = TypeVar("T")


class FailureKind(Enum):
    RETRY = "retry"  # may pass: try again after a wait
    AUTH = "auth"  # credentials refused: stop the tenant's run
    QUOTA = "quota"  # daily allowance spent: checkpoint and stop cleanly
    RECORD = "record"  # the request itself is at fault: hand it back to the caller


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    status: int  # HTTP status, 0 when no answer came
    message: str
    retry_after: float | None = None
    outcome_unknown: bool = False


@dataclass(frozen=True, slots=True)
class RetrySettings:
    attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5


#: how far back a fresh budget is told of calls another process made: longer than any CRM's burst window
RECALL = timedelta(minutes=10)


class _Retriable(Exception):
    def __init__(self, failure: Failure, cause: Exception) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.cause = cause


@dataclass
class ApiCaller:
    """Runs a connector's API calls for one tenant: budget, retries, classification and call counting."""

    tenant: str
    classify: Callable[[Exception], Failure]
    budget: RateBudget
    stats: CallStats
    settings: RetrySettings = RetrySettings()
    #: calls this run may make in all (see `ConnectorContext.call_allowance`); None: no limit of the tenant's own
    allowance: int | None = None

    def __post_init__(self) -> None:
        clock = self.budget.clock
        self.budget.recall(self.stats.journal.since(clock.now() - RECALL))

    def call(
        self,
        fn: Callable[[], T],
        *,
        scope: str = "default",
        ok_status: int | Callable[[T], int] = 200,
        idempotent: bool = True,
    ) -> T:
        """Run `fn` (one API call) until it succeeds, retrying what may pass.

        `ok_status` is the status counted for a success, or a function that reads it off the result. A call
        that is not `idempotent` (a create) is retried only when the CRM surely did not carry it out (429);
        a lost answer or a 5xx leaves its outcome unknown, which the caller must settle, not repeat.

        :raises AuthError: the credentials were refused.
        :raises QuotaExhausted: the CRM's daily allowance, or the tenant's own `allowance`, is spent.
        :raises TransientError: retries ran out.
        :raises Exception: the SDK's own exception, unchanged, when the failure is the record's.
        """
        longest = self.budget.longest(scope) or self.settings.max_wait
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.attempts),
            wait=lambda state: self._wait(state, min(self.settings.max_wait, longest)),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, _Retriable) and not e.failure.outcome_unknown),
            sleep=self.budget.clock.sleep,
            reraise=True,
        )
        try:
            result: T = retrying(self._attempt, fn, scope, ok_status, idempotent)
            return result
        except _Retriable as exhausted:
            failure = exhausted.failure
            if failure.outcome_unknown:
                raise OutcomeUnknown(self.tenant, f"{failure.message} (status {failure.status}); whether the CRM "
                                     "carried the call out is unknown: it is settled before anything is sent again"
                                     ) from exhausted.cause
            raise TransientError(
                self.tenant,
                f"gave up after {self.settings.attempts} attempts: {failure.message} (status {failure.status}); "
                "everything already stored is kept, the next run resumes from there",
            ) from exhausted.cause

    def _attempt(self, fn: Callable[[], T], scope: str, ok_status: int | Callable[[T], int], idempotent: bool) -> T:
        if self.allowance is not None and self.stats.total >= self.allowance:
            raise QuotaExhausted(self.tenant, f"the tenant's daily_limit leaves {self.allowance} calls for this run "
                                 "and they are made; everything stored is kept, and a later run carries on as calls "
                                 "older than 24 hours stop counting")
        journal, clock = self.stats.journal, self.budget.clock
        try:
            with self.budget.call(scope):
                mark = journal.sent(scope, clock.now())
                try:
                    result = fn()
                finally:
                    journal.answered(mark, clock.now())
        except Exception as exc:  # classified below; nothing is swallowed
            failure = self.classify(exc)
            self._count(failure.status)
            if not idempotent and failure.kind is FailureKind.RETRY and failure.status != 429:
                raise _Retriable(replace(failure, outcome_unknown=True), exc) from exc
            self._raise(failure, exc)
        self._count(ok_status(result) if callable(ok_status) else ok_status)
        return result

    def _count(self, status: int) -> None:
        self.stats.record(status)

    def _raise(self, failure: Failure, exc: Exception) -> None:
        if failure.kind is FailureKind.RETRY:
            if failure.retry_after:
                self.budget.pause(failure.retry_after)
            raise _Retriable(failure, exc) from exc
        if failure.kind is FailureKind.AUTH:
            raise AuthError(self.tenant, failure.message) from exc
        if failure.kind is FailureKind.QUOTA:
            raise QuotaExhausted(self.tenant, failure.message) from exc
        raise exc

    def _wait(self, state: tenacity.RetryCallState, longest: float) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retriable) and exc.failure.retry_after is not None:
            return exc.failure.retry_after
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.settings.initial_wait, max=longest, jitter=self.settings.jitter
        )
        return backoff(state)


def refusal(failure: Failure) -> str | None:
    """The CRM's reason when it refused a request as sent (a 4xx `classify` leaves to the caller), else None: a
    request no one record is at fault for (a read, a look-up, a whole batch) then fails saying why."""
    return failure.message if failure.kind is FailureKind.RECORD and failure.status > 0 else None


def retry_after_seconds(headers: object) -> float | None:
    """The Retry-After header in seconds, when present and numeric (HTTP dates are not used by these CRMs)."""
    if not headers:
        return None
    getter = getattr(headers, "get", None)
    value = getter("Retry-After") or getter("retry-after") if getter else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
