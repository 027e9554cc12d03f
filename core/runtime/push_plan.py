"""The plan of a push the CRM's budget cannot fully afford: what matters most goes out first, the rest waits.

Given the units (and calls) a connector's `PushCapacity` leaves and what is due, a push sends, until they run
out: the writes that carry a lifecycle status change, then the tasks, then the other writes, largest score move
first. What it cannot afford stays pending in the outbox, neither tried nor refused, and goes out with the next
run's push, ranked with what that run queues. The run counts it as deferred (`RunCounts.deferred`) and says why
(`RunSummary.deferral`); a deferral is planned, not a fault, so it leaves the run's outcome as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from leadpulse.core.contract import PushCapacity
from leadpulse.core.store.outbox import Due

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PushPlan:
    """How many of each kind of due row a push sends, in the order it sends them, out of what was `due`."""

    status_writes: int
    tasks: int
    other_writes: int
    due: Due

    @property
    def deferred_writes(self) -> int:
        return self.due.status_writes + self.due.other_writes - self.status_writes - self.other_writes

    @property
    def deferred_tasks(self) -> int:
        return self.due.tasks - self.tasks

    @property
    def deferred(self) -> int:
        return self.deferred_writes + self.deferred_tasks

    def note(self, capacity: PushCapacity) -> str:
        """What the push deferred and why, in the words of the run's summary: the budget that ran out."""
        sent = self.status_writes + self.tasks + self.other_writes
        calls = capacity.calls
        if calls is not None and sent >= calls:
            left = f"{capacity.calls_budget} leave {calls:,}"
        else:
            left = f"{capacity.budget} leaves {capacity.units:,} {capacity.unit}"
        return (f"deferred {_many(self.deferred_writes, 'write')} and {_many(self.deferred_tasks, 'task')}: "
                f"{left}, enough for {sent:,} of the {sent + self.deferred:,} due (status changes and tasks first, "
                "then the largest score moves); the rest stays in the outbox for the next run")


def plan_push(capacity: PushCapacity, due: Due) -> PushPlan:
    """What `capacity` affords of `due`: status changes first, then tasks, then the other writes, each taking its
    cost of the units and one of the calls, if the CRM counts them."""
    units = capacity.units
    calls = capacity.calls if capacity.calls is not None else due.total

    def afford(wanted: int, cost: int) -> int:
        nonlocal units, calls
        taken = max(0, min(wanted, units // cost, calls))
        units -= taken * cost
        calls -= taken
        return taken

    status_writes = afford(due.status_writes, capacity.write_cost)
    tasks = afford(due.tasks, capacity.task_cost)
    return PushPlan(status_writes, tasks, afford(due.other_writes, capacity.write_cost), due)


def at_most(total: int, fetch: Callable[[int], Sequence[T]]) -> Callable[[int], Sequence[T]]:
    """`fetch` (the next batch of up to n rows), handing out no more than `total` rows over all its calls."""
    left = total

    def limited(n: int) -> Sequence[T]:
        nonlocal left
        batch = fetch(min(n, left)) if left > 0 else ()
        left -= len(batch)
        return batch

    return limited


def _many(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
