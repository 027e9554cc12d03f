"""Scoring contacts as they stood at past moments: the rows a backtest's figures are made of.

A score is a pure function of (rules, contact, activities, moment), so a contact can be scored at any past moment
from what the store holds now: only the activities at or before the moment count, and decay, windows and
inactivity are measured from it (the engine leaves later activities out). What the store cannot wind back are the
contact's fields, held as last pulled: a field filled in after the fact (a job title found on a sales call) can leak
the outcome into an earlier moment, and every report says so.

The population at a moment is every contact made at or before it (its CRM creation time; for a contact stored
without one, its first activity; with neither, every moment), and its outcome is whether it converted within the
horizon after the moment. A contact that had converted at or before the moment is left out of the figures, as is
one the store says converted without saying when.

The lifecycle status of each contact is the one the rules would have set by each moment: the moments are scored
in order and each contact carries the status the rules last set into the next, starting from none (the CRM's status
as last pulled would leak the outcome too).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.columnar import ColumnEngine, Scores
from leadpulse.core.engine.insight.metrics import Category, Flags, Floats, ScoredMoment
from leadpulse.core.engine.rules import LifecycleConfig
from leadpulse.core.engine.scoring import ActivityRow, Engine
from leadpulse.core.model import Contact, Lifecycle, Outcome, utc
from leadpulse.core.schedule import format_duration

__all__ = [
    "NO_STATUS", "MomentScores", "Moments", "Outcomes", "Population", "Tally", "newest_conversion", "plan_moments",
    "score_moments", "score_moments_by_contact", "scored_at", "spaced",
]

#: the status column's value for a contact the rules had moved nowhere by the moment
NO_STATUS = "none"

_NEVER = np.inf


@dataclass(frozen=True)
class Tally:
    """What a report must say of the contacts a backtest read: how many, how many had no creation time, and how
    many converted without a date. Tallies of parts add up."""

    contacts: int = 0
    #: contacts stored without a creation time, counted from their first activity
    undated_contacts: int = 0
    #: contacts the store says converted without saying when: left out of every moment
    undated_conversions: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.contacts + other.contacts, self.undated_contacts + other.undated_contacts,
                     self.undated_conversions + other.undated_conversions)

    def notes(self) -> list[str]:
        """What a report on these contacts should say of them, in words."""
        told = ["fields are as last pulled, not as they stood at each moment: a field filled in after the fact "
                "(from a sales call, an enrichment run) can make a score at an earlier moment look better than it was"]
        if self.undated_contacts:
            told.append(f"{self.undated_contacts} of {self.contacts} contacts have no creation time stored and count "
                        "from their first activity: the CRM or export gave none, or they were stored by an older "
                        "leadpulse (a full sync, `leadpulse sync --full`, fills it in where the CRM has it)")
        if self.undated_conversions:
            told.append(f"{self.undated_conversions} contacts converted without a stored date and are left out")
        return told


@dataclass(frozen=True, eq=False)
class Population:
    """Contacts a backtest scores (all the store holds, or a chunk of them): each live contact with its activity
    rows, since when it counts, and when it converted.

    `since` and `converted_at` are Unix seconds, one per contact: from when the contact counts (-inf: always) and
    when it converted (+inf: not, as far as the store knows).
    """

    contacts: Sequence[Contact]
    rows: Sequence[Sequence[ActivityRow]]
    since: Floats
    converted_at: Floats
    tally: Tally
    #: the newest conversion among them, if any
    newest_outcome: datetime | None

    @classmethod
    def of(cls, records: Iterable[tuple[Contact, Sequence[ActivityRow], Outcome | None]]) -> Population:
        """The population of `records`: each contact with its activity rows (as the store holds them) and its
        outcome, if the store has one."""
        contacts: list[Contact] = []
        rows: list[Sequence[ActivityRow]] = []
        since: list[float] = []
        converted: list[float] = []
        undated_contacts = undated_conversions = 0
        newest: datetime | None = None
        for contact, activity_rows, outcome in records:
            made = contact.created_at or _first_activity(activity_rows)
            undated_contacts += contact.created_at is None
            when = -_NEVER if made is None else made.timestamp()
            if outcome is not None and outcome.converted:
                if outcome.converted_at is None:
                    undated_conversions += 1
                    continue
                converted.append(outcome.converted_at.timestamp())
                newest = outcome.converted_at if newest is None or outcome.converted_at > newest else newest
            else:
                converted.append(_NEVER)
            contacts.append(contact)
            rows.append(activity_rows)
            since.append(when)
        tally = Tally(len(contacts) + undated_conversions, undated_contacts, undated_conversions)
        return cls(contacts, rows, np.array(since, dtype=np.float64), np.array(converted, dtype=np.float64), tally,
                   utc(newest) if newest else None)

    def outcomes_at(self, at: datetime, horizon: timedelta) -> Outcomes:
        """Each contact's standing at moment `at`: made by then, converted within `horizon` after it, converted at
        or before it."""
        stamp, until = at.timestamp(), (at + horizon).timestamp()
        return Outcomes(self.since <= stamp, (self.converted_at > stamp) & (self.converted_at <= until),
                        self.converted_at <= stamp)


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Columns over a population's contacts at one moment (see `Population.outcomes_at`)."""

    present: Flags
    converted: Flags
    converted_before: Flags

    @property
    def judged(self) -> Flags:
        """The contacts a backtest judges at the moment: made by then and not converted by then."""
        return self.present & ~self.converted_before


@dataclass(frozen=True, eq=False)
class MomentScores:
    """A population scored column-wise at one moment, every contact of it, with their outcomes."""

    at: datetime
    scores: Scores
    outcomes: Outcomes


def scored_at(engine: ColumnEngine, population: Population, moments: Moments) -> Iterator[MomentScores]:
    """`population` scored column-wise at each of `moments`, its activities matched once for all of them."""
    by_id = {contact.id: rows for contact, rows in zip(population.contacts, population.rows, strict=True)}
    batch = engine.batch(population.contacts, by_id)
    for at, horizon in zip(moments.at, moments.horizons, strict=True):
        yield MomentScores(at, engine.score(batch, at), population.outcomes_at(at, horizon))


def newest_conversion(outcomes: Iterable[Outcome]) -> datetime | None:
    """The newest dated conversion among `outcomes`, if any."""
    return max((utc(o.converted_at) for o in outcomes if o.converted and o.converted_at is not None), default=None)


def _first_activity(rows: Sequence[ActivityRow]) -> datetime | None:
    times = [row[3] if isinstance(row[3], datetime) else datetime.fromisoformat(row[3]) for row in rows]
    return min(times, default=None)


@dataclass(frozen=True)
class Moments:
    """The moments a backtest scores at, each with its horizon (cut where the stored outcomes end), and what was
    cut or dropped, in words."""

    at: tuple[datetime, ...]
    horizons: tuple[timedelta, ...]
    horizon: timedelta
    notes: tuple[str, ...]


def spaced(since: datetime, until: datetime, every: timedelta) -> list[datetime]:
    """The moments from `since` to `until` (both included when they fall on the step), `every` apart."""
    if every <= timedelta(0):
        raise ValueError(f"expected a positive step between moments, found {format_duration(every)}")
    moments = []
    at = utc(since)
    while at <= until:
        moments.append(at)
        at += every
    return moments


def plan_moments(moments: Sequence[datetime], horizon: timedelta, newest_outcome: datetime | None) -> Moments:
    """The moments to score at, in order, each with the horizon the stored outcomes can judge.

    A moment whose horizon reaches past the newest stored outcome has it cut there, and one at or after that outcome
    is dropped: after it the store cannot tell a contact that did not convert from one whose conversion was not
    pulled yet. Both are said in the notes.

    :raises ValueError: when the store holds no dated conversion, no moment is given, or none is left
    """
    if horizon <= timedelta(0):
        raise ValueError(f"expected a positive horizon, found {format_duration(horizon)}")
    if newest_outcome is None:
        raise ValueError("the store holds no dated conversion, so there is nothing to judge the scores by: pull the "
                         "CRM's outcomes first (a won deal, a customer lifecycle stage, a converted Lead)")
    if not moments:
        raise ValueError("expected at least one moment to score at")
    kept: list[datetime] = []
    horizons: list[timedelta] = []
    notes: list[str] = []
    newest = utc(newest_outcome)
    for moment in sorted({utc(m) for m in moments}):
        if moment >= newest:
            notes.append(f"moment {_day(moment)} left out: it is at or after the newest stored conversion "
                         f"({_day(newest)}), so no outcome after it is known")
            continue
        reach = min(horizon, newest - moment)
        if reach < horizon:
            notes.append(f"moment {_day(moment)}: horizon cut from {format_duration(horizon)} to "
                         f"{format_duration(reach)}, where the stored conversions end ({_day(newest)}); its rates "
                         "count fewer days of conversions than the others'")
        kept.append(moment)
        horizons.append(reach)
    if not kept:
        raise ValueError(f"every moment is at or after the newest stored conversion ({_day(newest)}): choose moments "
                         f"before it, at least the horizon ({format_duration(horizon)}) before it for whole horizons")
    return Moments(tuple(kept), tuple(horizons), horizon, tuple(notes))


def _status_name(status: Lifecycle | None) -> str:
    return status.value if status is not None else NO_STATUS


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment.time() != datetime.min.time() else (
        moment.strftime("%Y-%m-%d"))


def score_moments(engine: ColumnEngine, population: Population, moments: Moments) -> list[ScoredMoment]:
    """Every contact of `population` made by each moment, scored as it stood then, with its outcome: column by
    column (see `leadpulse.core.engine.columnar`), the activities matched once for every moment.

    Gives what `score_moments_by_contact` gives, faster; the lifecycle status is decided for every contact at once
    as `Engine.decide_status` decides it for one (the transitions' gates, forward only unless the tenant allows
    demotion).
    """
    config = engine.config
    statuses = _Statuses(config.lifecycle, [step.name for step in config.bands], len(population.contacts))
    scored: list[ScoredMoment] = []
    for moment in scored_at(engine, population, moments):
        scores, outcomes = moment.scores, moment.outcomes
        present = outcomes.present
        statuses.advance(scores, present)
        scored.append(ScoredMoment(
            at=moment.at, total=scores.total[present], band=Category.of(scores.band[present]),
            converted=outcomes.converted[present], converted_before=outcomes.converted_before[present],
            axes={name: values[present] for name, values in scores.axes.items()},
            grade=Category.of(scores.grade[present]) if scores.grade is not None else None,
            quadrant=Category.of(scores.quadrant[present]) if scores.quadrant is not None else None,
            status=statuses.category()[present] if config.lifecycle is not None else None,
        ))
    return scored


class _Statuses:
    """Each contact's lifecycle stage as the rules set it moment after moment, as a rank (-1: none yet)."""

    def __init__(self, lifecycle: LifecycleConfig | None, bands: Sequence[str], size: int) -> None:
        self.lifecycle, self.bands = lifecycle, list(bands)
        self.rank = np.full(size, -1, dtype=np.int64)
        # highest stage first, the first listed among equals: the first gate that holds is the target
        transitions = list(enumerate(lifecycle.transitions)) if lifecycle else []
        self.gates = sorted(transitions, key=lambda pair: -pair[1].to.rank)

    def advance(self, scores: Scores, present: npt.NDArray[np.bool_]) -> None:
        """Move the `present` contacts to where `scores` take them."""
        if self.lifecycle is None:
            return
        target = np.full(len(self.rank), -1, dtype=np.int64)
        band_rank = np.zeros(len(self.rank), dtype=np.int64)
        for rank, name in enumerate(self.bands):
            band_rank[scores.band == name] = rank
        for t, transition in reversed(self.gates):  # the first that holds is assigned last
            holds = np.ones(len(self.rank), dtype=np.bool_)
            if transition.when is not None or transition.after is not None:
                holds &= scores.events[:, t]
            if transition.min_total is not None:
                holds &= scores.total >= transition.min_total
            if transition.min_band is not None:
                holds &= band_rank >= self.bands.index(transition.min_band)
            if transition.bands is not None:
                holds &= np.isin(scores.band, list(transition.bands))
            if transition.grades is not None:
                holds &= np.isin(scores.grade, list(transition.grades)) if scores.grade is not None else False
            if transition.quadrants is not None:
                holds &= (np.isin(scores.quadrant, [q.value for q in transition.quadrants])
                          if scores.quadrant is not None else False)
            for axis, least in (transition.min_axis or {}).items():
                holds &= scores.axes[axis] >= least
            target[holds] = transition.to.rank
        moved = present & (target >= 0)
        if not self.lifecycle.allow_demotion:
            moved &= target > self.rank
        self.rank[moved] = target[moved]

    def category(self) -> Category:
        return Category((self.rank + 1).astype(np.int16), (NO_STATUS, *(stage.value for stage in Lifecycle)))


def score_moments_by_contact(engine: Engine, population: Population, moments: Moments) -> list[ScoredMoment]:
    """`score_moments` contact by contact with the per-contact engine: the reference the column-wise path is held
    to."""
    statuses: list[Lifecycle | None] = [None] * len(population.contacts)
    lifecycle = engine.config.lifecycle
    scored: list[ScoredMoment] = []
    for at, horizon in zip(moments.at, moments.horizons, strict=True):
        outcomes = population.outcomes_at(at, horizon)
        present = np.flatnonzero(outcomes.present).tolist()
        cards = []
        for i in present:
            contact = population.contacts[i]
            card = engine.score_rows(contact, population.rows[i], at)
            if lifecycle is not None:
                last = statuses[i]
                held = replace(contact, status=lifecycle.values.get(last) if last else None)
                change = engine.decide_status(held, card, last)
                if change is not None:
                    statuses[i] = change.to
            cards.append(card)
        axes = list(engine.config.axes)
        scored.append(ScoredMoment(
            at=at,
            total=np.array([card.total for card in cards], dtype=np.float64),
            band=Category.of([card.band for card in cards]),
            converted=outcomes.converted[present],
            converted_before=outcomes.converted_before[present],
            axes={name: np.array([card.axes[name] for card in cards], dtype=np.float64) for name in axes},
            grade=Category.of([card.grade or "" for card in cards]) if engine.config.grades else None,
            quadrant=(Category.of([card.quadrant.value if card.quadrant else "" for card in cards])
                      if engine.config.quadrant else None),
            status=(Category.of([_status_name(statuses[i]) for i in present])
                    if lifecycle is not None else None),
        ))
    return scored
