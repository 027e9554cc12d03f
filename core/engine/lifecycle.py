"""Band and grade ladders, and the lifecycle transitions a score drives, compiled once per rule set."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.cards import CardColumns, ScoreCard, StatusChange, shown_points
from leadpulse.core.engine.rules import LifecycleConfig, Step, Transition
from leadpulse.core.engine.wording import days_text, describe, one_of
from leadpulse.core.model import Lifecycle

__all__ = ["Gate", "Ladder", "LifecycleRules"]



class Ladder:
    """Steps with inclusive (`min`) or exclusive (`above`) lower bounds (validated at load: sorted, no gap, no
    overlap)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.names = tuple(step.name for step in steps)
        # every step above the first has a lower bound (validated at load); a value v sorts as (v, 0.5), so it
        # reaches a step starting at v inclusively, (v, 0), and not one starting there exclusively, (v, 1)
        self._starts = [(float("-inf"), 0.0), *((step.lower or 0.0, 1.0 if step.above is not None else 0.0)
                                                 for step in steps[1:])]
        self._ranks = {name: rank for rank, name in enumerate(self.names)}

    def place(self, value: float) -> str:
        return self.names[bisect_right(self._starts, (value, 0.5)) - 1]

    def rank(self, name: str) -> int:
        return self._ranks[name]


class LifecycleRules:
    def __init__(self, config: LifecycleConfig, bands: Ladder) -> None:
        self.config, self.bands = config, bands
        self._ranks: dict[str, tuple[float, Lifecycle | None]] = {
            value: (float(stage.rank), stage) for stage, value in config.values.items()
        }
        mapped_positions: list[tuple[int, float]] = []
        order = config.status_order or ()
        for value, (rank, _) in self._ranks.items():
            if value in order:
                mapped_positions.append((order.index(value), rank))
        for position, value in enumerate(order):
            if value not in self._ranks:
                below = [rank for at, rank in mapped_positions if at < position]
                # between two mapped stages: above the lower one, below the next
                self._ranks[value] = ((max(below) if below else -1.0) + 0.5, None)
        # Highest stage first, so the first transition that holds is the target; among equal ranks the first
        # listed wins (a stable sort), as max() over the transitions would keep.
        self._transitions = sorted((Gate(t, n, bands) for n, t in enumerate(config.transitions)),
                                   key=_by_rank_descending)

    def decide(self, status: str | None, card: ScoreCard, last_set: Lifecycle | None) -> StatusChange | None:
        return self.move(status, self._target(card), last_set)

    def move(self, status: str | None, target: Lifecycle | None, last_set: Lifecycle | None) -> StatusChange | None:
        """The move from the CRM's `status` to `target`, the highest stage whose transition holds for a card (see
        `targets`), if the rules allow it; `last_set` is the stage leadpulse set last."""
        if target is None:
            return None
        if last_set is not None and target.rank <= last_set.rank and not self.config.allow_demotion:
            # Forward only, from where leadpulse itself last moved the contact, whatever the CRM shows now: the
            # write may not have landed yet (or is off), or a person set the contact back, which is theirs to do.
            return None
        if not status:
            return StatusChange(None, target, self.config.values[target])
        if status not in self._ranks:
            return None
        rank, current = self._ranks[status]
        if target.rank == rank:
            return None
        if target.rank < rank and not (self.config.allow_demotion and current is not None and current == last_set):
            return None
        return StatusChange(current, target, self.config.values[target])

    def standing(self, card: ScoreCard) -> str:
        """Where the card stands against the transitions: the highest that holds, and the next one up with what it
        lacks."""
        band = self.bands.rank(card.band)
        holding = next((gate for gate in self._transitions if gate.holds(card, band)), None)
        above = [gate for gate in reversed(self._transitions) if holding is None or gate.rank > holding.rank]
        told = f"the transition to {holding.to.value} holds" if holding else "no transition holds"
        upcoming = next((gate for gate in above if not gate.holds(card, band)), None)
        if upcoming is not None:
            told += f"; next, {upcoming.to.value} needs {'; '.join(upcoming.lacks(card, band))}"
        return told

    def _target(self, card: ScoreCard) -> Lifecycle | None:
        band = self.bands.rank(card.band)
        for gate in self._transitions:
            if gate.holds(card, band):
                return gate.to
        return None

    def targets(self, cards: CardColumns) -> list[Lifecycle | None]:
        """Each card's target stage, as `move` takes it, worked out transition by transition for all of them."""
        band = np.fromiter(map(self.bands.rank, cards.bands), dtype=np.int64, count=len(cards.bands))
        found: list[Lifecycle | None] = [None] * len(band)
        open_ = np.ones(len(band), dtype=np.bool_)
        for gate in self._transitions:
            held = gate.holding(cards, band) & open_
            for i in np.flatnonzero(held).tolist():
                found[i] = gate.to
            open_ &= ~held
        return found


class Gate:
    """A lifecycle transition compiled once, its lowest band as a rank."""

    __slots__ = ("band_names", "bands", "event", "grades", "min_axis", "min_band", "min_total", "quadrants", "rank",
                 "to", "transition")

    def __init__(self, transition: Transition, index: int, bands: Ladder) -> None:
        self.to, self.rank, self.transition = transition.to, transition.to.rank, transition
        self.band_names = bands.names
        #: the transition's place in the tenant's list, when it has conditions on fields or an event: they hold
        #: when the card's `events` name it
        self.event = index if transition.when is not None or transition.after is not None else None
        self.min_total = transition.min_total
        self.min_band = bands.rank(transition.min_band) if transition.min_band is not None else None
        self.bands, self.grades, self.quadrants = transition.bands, transition.grades, transition.quadrants
        self.min_axis = tuple((transition.min_axis or {}).items())

    def holds(self, card: ScoreCard, band: int) -> bool:
        if self.event is not None and self.event not in card.events:
            return False
        if self.min_total is not None and card.total < self.min_total:
            return False
        if self.min_band is not None and band < self.min_band:
            return False
        if self.bands is not None and card.band not in self.bands:
            return False
        if self.grades is not None and card.grade not in self.grades:
            return False
        if self.quadrants is not None and card.quadrant not in self.quadrants:
            return False
        return all(card.axes[axis] >= least for axis, least in self.min_axis)

    def holding(self, cards: CardColumns, band: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """`holds` for each of `cards` (`band`: the ranks of their bands), condition by condition."""
        size = len(band)

        def each(test: Callable[[Any], bool], values: Sequence[Any]) -> npt.NDArray[np.bool_]:
            return np.fromiter(map(test, values), dtype=np.bool_, count=size)

        held = np.ones(size, dtype=np.bool_)
        if self.event is not None:
            held &= each(lambda events: self.event in events, cards.events)
        if self.min_total is not None:
            held &= ~(np.array(cards.totals, dtype=np.float64) < self.min_total)
        if self.min_band is not None:
            held &= band >= self.min_band
        if self.bands is not None:
            held &= each(self.bands.__contains__, cards.bands)
        if self.grades is not None:
            held &= each(self.grades.__contains__, cards.grades)
        if self.quadrants is not None:  # each quadrant by its value, which equals its member
            held &= each(self.quadrants.__contains__, cards.quadrants)
        for axis, least in self.min_axis:
            held &= np.array(cards.axes[axis], dtype=np.float64) >= least
        return held

    def lacks(self, card: ScoreCard, band: int) -> list[str]:
        """What `card` lacks for this transition, each condition that fails as words."""
        missing = []
        if self.event is not None and self.event not in card.events:
            if self.transition.when is not None:
                missing.append(f"the contact's fields: {describe(self.transition.when)}")
            if self.transition.after is not None:
                after = self.transition.after
                what = " or ".join([*after.kinds(), *after.vendor_types()])
                window = f" within {days_text(after.within_days)}" if after.within_days else ""
                missing.append(f"a {what}{window}")
        if self.min_total is not None and card.total < self.min_total:
            missing.append(f"a score of {self.min_total:g} (now {shown_points(card.total, sign=False)})")
        if self.min_band is not None and band < self.min_band:
            missing.append(f"band {self.band_names[self.min_band]} or above (now {card.band})")
        if self.bands is not None and card.band not in self.bands:
            missing.append(f"band {one_of(list(self.bands))} (now {card.band})")
        if self.grades is not None and card.grade not in self.grades:
            missing.append(f"grade {one_of(list(self.grades))} (now {card.grade or 'none'})")
        if self.quadrants is not None and card.quadrant not in self.quadrants:
            now = card.quadrant.value if card.quadrant else "none"
            missing.append(f"quadrant {one_of([q.value for q in self.quadrants])} (now {now})")
        missing += [f"{axis} {least:g} (now {shown_points(card.axes[axis], sign=False)})"
                    for axis, least in self.min_axis if card.axes[axis] < least]
        return missing


def _by_rank_descending(gate: Gate) -> int:
    return -gate.rank
