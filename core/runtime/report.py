"""The figures of `leadpulse report`: one tenant's store described, offline, as tables and charts draw it.

`gather_report` reads the store and gives a `Report`; the terminal and the HTML page only format it, so both show
the same numbers. What needs the stored conversions (the bands over past moments, conversion by band, the gains
curve, each rule's conversion with and without it) comes from the backtest's moments; a store without a dated
conversion has none of it, and the report says why in `Report.missing`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import orjson

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.insight.asof import Moments, Population, scored_at
from leadpulse.core.engine.insight.metrics import GroupFigures
from leadpulse.core.model import utc
from leadpulse.core.runtime.backtest import READ_CHUNK, Backtest, run_backtest
from leadpulse.core.store.store import Store

#: the activity kinds that count as the owner following a lead up
FOLLOW_UP_KINDS = ("call", "meeting", "email_sent")
#: the shares of contacts, best scored first, at which the gains table reads the curve
GAINS_AT = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
#: status moves spread over more than this are counted per month, else per week
MONTHLY_AFTER = timedelta(days=182)
#: at most this many bars in the score histogram
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class BandCount:
    name: str
    contacts: int
    share: float | None


@dataclass(frozen=True)
class BandsAt:
    """The contacts scored and not yet converted at one backtest moment, per band (lowest first)."""

    at: datetime
    bands: tuple[BandCount, ...]


@dataclass(frozen=True)
class Bin:
    """Stored totals from `low` (included) to `high` (excluded)."""

    low: float
    high: float
    contacts: int


@dataclass(frozen=True)
class GainsPoint:
    """The best scored `contact_share` of the contact-moments hold `conversion_share` of the conversions."""

    contact_share: float
    conversion_share: float


@dataclass(frozen=True)
class RuleFigures:
    """One rule: the points it contributes to the stored scores, and how conversion differs at the backtest's
    moments between the contacts it fired for and the others (None without a backtest, or an empty group)."""

    rule_id: str
    label: str
    axis: str
    points: float
    contacts: int
    fired: int | None = None
    fired_rate: float | None = None
    unfired: int | None = None
    unfired_rate: float | None = None

    @property
    def difference(self) -> float | None:
        """The conversion rate where the rule fired minus where it did not."""
        if self.fired_rate is None or self.unfired_rate is None:
            return None
        return self.fired_rate - self.unfired_rate


@dataclass(frozen=True)
class StatusMove:
    """Lifecycle status changes from `old` (None: no status yet) to `new` in the week or month starting `period`."""

    period: date
    old: str | None
    new: str
    count: int

    @property
    def move(self) -> str:
        return f"{self.old or 'none'} -> {self.new}"


@dataclass(frozen=True)
class HandOff:
    """Follow-up tasks handed to the CRM and how long until the owner's next call, meeting or email on the
    contact: waits of the followed-up ones (None for a figure of none)."""

    tasks: int
    followed_up: int
    median_wait: timedelta | None
    p90_wait: timedelta | None

    @property
    def waiting(self) -> int:
        return self.tasks - self.followed_up


@dataclass(frozen=True)
class Backtested:
    """What the report takes from the backtest's moments."""

    moments: Moments
    bands_over_time: tuple[BandsAt, ...]
    #: pooled over the moments, lowest band first
    by_band: tuple[GroupFigures, ...]
    contact_moments: int
    conversions: int
    #: from (0, 0) to (1, 1); empty when no contact converted within a horizon
    gains: tuple[GainsPoint, ...]
    notes: tuple[str, ...]

    def gains_at(self, contact_share: float) -> float | None:
        """The share of conversions among the best scored `contact_share` of contact-moments."""
        if not self.gains:
            return None
        return float(np.interp(contact_share, [p.contact_share for p in self.gains],
                               [p.conversion_share for p in self.gains]))


@dataclass(frozen=True)
class Report:
    """Everything `leadpulse report` shows of one tenant's store."""

    tenant: str
    #: stored scores per band, lowest band first
    bands_now: tuple[BandCount, ...]
    histogram: tuple[Bin, ...]
    #: ranked by the points they contribute, most first
    rules: tuple[RuleFigures, ...]
    #: "week" or "month": what each status move's period is
    period: str
    status_moves: tuple[StatusMove, ...]
    hand_off: HandOff
    backtested: Backtested | None
    #: why the backtest's sections are left out, when they are
    missing: str | None

    @property
    def rules_by_conversion(self) -> tuple[RuleFigures, ...]:
        """The rules with a conversion difference, widest first."""
        known = [rule for rule in self.rules if rule.difference is not None]
        return tuple(sorted(known, key=lambda rule: -(rule.difference or 0.0)))


def gather_report(store: Store, tenant: TenantConfig) -> Report:
    """The report's figures from `store`, scored with `tenant`'s current rules; no CRM is called."""
    backtested: Backtested | None = None
    missing: str | None = None
    conversion: dict[str, tuple[int, int, int, int]] = {}
    try:
        backtest = run_backtest(store, tenant, [("current", tenant.scoring)])
    except ValueError as exc:
        missing = str(exc)
    else:
        backtested, conversion = _backtested(store, tenant, backtest)
    period, moves = status_moves(store)
    return Report(tenant.name, bands_now(store, tenant), histogram(store), _rules(store, tenant, conversion),
                  period, moves, hand_off(store), backtested, missing)


def bands_now(store: Store, tenant: TenantConfig) -> tuple[BandCount, ...]:
    """The stored scores per band, the tenant's ladder first (lowest band first), then any band it no longer
    names."""
    counts = store.band_counts()
    names = [step.name for step in tenant.scoring.bands]
    names += sorted(set(counts) - set(names))
    total = sum(counts.values())
    return tuple(BandCount(name, counts.get(name, 0), counts.get(name, 0) / total if total else None)
                 for name in names)


def histogram(store: Store) -> tuple[Bin, ...]:
    """The stored totals in at most `HISTOGRAM_BINS` bins of equal, whole-number width."""
    totals = np.array([row[0] for row in store.db.execute("SELECT total FROM scores")], dtype=np.float64)
    if not len(totals):
        return ()
    low, high = float(np.floor(totals.min())), float(np.floor(totals.max())) + 1
    width = max(1.0, float(np.ceil((high - low) / HISTOGRAM_BINS)))
    edges = np.arange(low, high + width, width)
    edges = edges[: int(np.searchsorted(edges, totals.max(), side="right")) + 1]
    counts, _ = np.histogram(totals, bins=edges)
    return tuple(Bin(float(a), float(b), int(n)) for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True))


def status_moves(store: Store) -> tuple[str, tuple[StatusMove, ...]]:
    """The lifecycle status changes in the score history, counted per week (per month when they spread over more
    than `MONTHLY_AFTER`), oldest period first."""
    rows = [(utc(datetime.fromisoformat(at)), old, new) for at, old, new in store.db.execute(
        "SELECT at, old_status, new_status FROM history "
        "WHERE new_status IS NOT NULL AND (old_status IS NULL OR old_status != new_status)")]
    if not rows:
        return "week", ()
    times = [at for at, _, _ in rows]
    period = "month" if max(times) - min(times) > MONTHLY_AFTER else "week"
    counts = Counter((_period_start(at, period), old, new) for at, old, new in rows)
    return period, tuple(StatusMove(start, old, new, n) for (start, old, new), n in
                         sorted(counts.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])))


def _period_start(at: datetime, period: str) -> date:
    day = at.date()
    return day.replace(day=1) if period == "month" else day - timedelta(days=day.weekday())


def hand_off(store: Store) -> HandOff:
    """How long the owners took to follow up the tasks handed to the CRM: from the start of the run that queued
    a task (the row's last change when that run is gone) to the contact's first call, meeting or email after it."""
    tasks = [(cid, utc(datetime.fromisoformat(at))) for cid, at in store.db.execute(
        "SELECT o.contact_id, coalesce(r.started_at, o.updated_at) FROM outbox o "
        "LEFT JOIN runs r ON r.id = o.created_run WHERE o.kind = 'task' AND o.state = 'done'")]
    marks = ", ".join("?" for _ in FOLLOW_UP_KINDS)
    followed: dict[str, list[datetime]] = {}
    for cid, at in store.db.execute(
            f"SELECT contact_id, occurred_at FROM activities WHERE kind IN ({marks}) AND contact_id IN "
            "(SELECT contact_id FROM outbox WHERE kind = 'task' AND state = 'done')", FOLLOW_UP_KINDS):
        followed.setdefault(cid, []).append(utc(datetime.fromisoformat(at)))
    waits = [wait for cid, created in tasks
             if (wait := _first_after(followed.get(cid, ()), created)) is not None]
    if not waits:
        return HandOff(len(tasks), 0, None, None)
    seconds = np.array([wait.total_seconds() for wait in waits])
    return HandOff(len(tasks), len(waits), timedelta(seconds=float(np.median(seconds))),
                   timedelta(seconds=float(np.percentile(seconds, 90))))


def _first_after(times: Iterable[datetime], created: datetime) -> timedelta | None:
    later = [at for at in times if at > created]
    return min(later) - created if later else None


# -- from the backtest's moments ---------------------------------------------------------------------------------


def _backtested(store: Store, tenant: TenantConfig, backtest: Backtest
                ) -> tuple[Backtested, dict[str, tuple[int, int, int, int]]]:
    """The backtest's figures the report shows, its gains curve, and per rule id the contact-moments it fired
    for, their conversions, the ones it did not fire for and theirs."""
    figures = backtest.results[0].figures
    over_time = tuple(BandsAt(m.at, tuple(BandCount(b.name, b.contacts, b.contact_share) for b in m.bands))
                      for m in figures.moments if m.at is not None)
    totals, converted, tallies = _scored(store, tenant, backtest.moments)
    ids = tenant.scoring.rule_ids()
    conversion = {rule: (int(tallies[0, r]), int(tallies[1, r]), int(tallies[2, r]), int(tallies[3, r]))
                  for r, rule in enumerate(ids)}
    pooled = figures.pooled
    return Backtested(backtest.moments, over_time, pooled.bands, pooled.contacts, pooled.conversions,
                      gains(totals, converted), backtest.notes), conversion


def _scored(store: Store, tenant: TenantConfig, plan: Moments
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Every contact-moment of the backtest not converted at its moment, as its total and whether it converted
    within the horizon, and the rules' tallies (see `_rule_tallies`), a chunk of contacts at a time."""
    outcomes = store.outcomes()
    engine = ColumnEngine(tenant.scoring)
    totals: list[npt.NDArray[np.float64]] = []
    converted: list[npt.NDArray[np.bool_]] = []
    tallies = np.zeros((4, len(tenant.scoring.rules)), dtype=np.int64)
    for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=READ_CHUNK):
        population = Population.of((contact, rows, outcomes.get(contact.id)) for contact, rows, _ in chunk)
        for moment in scored_at(engine, population, plan):
            kept = moment.outcomes.judged
            won = moment.outcomes.converted[kept]
            totals.append(moment.scores.total[kept])
            converted.append(won)
            tallies += _rule_tallies(moment.scores.fired[kept], won)
    if not totals:
        return np.zeros(0), np.zeros(0, dtype=np.bool_), tallies
    return np.concatenate(totals), np.concatenate(converted), tallies


def _rule_tallies(fired: npt.NDArray[np.bool_], converted: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Per rule (columns), over the judged contact-moments (rows of `fired`): those it fired for, how many of them
    converted within the horizon, those it did not fire for, and how many of those converted (rows)."""
    return np.stack([fired.sum(axis=0), fired[converted].sum(axis=0), (~fired).sum(axis=0),
                     (~fired[converted]).sum(axis=0)]).astype(np.int64)


def gains(totals: npt.NDArray[np.float64], converted: npt.NDArray[np.bool_]) -> tuple[GainsPoint, ...]:
    """The cumulative gains curve: contacts ranked by score, best first, one point per distinct score (tied
    contacts are taken together), from (0, 0) to (1, 1). Empty when none converted."""
    conversions = int(converted.sum())
    if conversions == 0:
        return ()
    _, group, sizes = np.unique(-totals, return_inverse=True, return_counts=True)
    converted_in = np.bincount(group.reshape(-1), weights=converted.astype(np.float64), minlength=len(sizes))
    contact_share = np.cumsum(sizes) / len(totals)
    conversion_share = np.cumsum(converted_in) / conversions
    return (GainsPoint(0.0, 0.0), *(GainsPoint(float(c), float(v))
                                    for c, v in zip(contact_share, conversion_share, strict=True)))


# -- the rules ---------------------------------------------------------------------------------------------------


def _rules(store: Store, tenant: TenantConfig, conversion: dict[str, tuple[int, int, int, int]]
           ) -> tuple[RuleFigures, ...]:
    """Every rule of the tenant's file (and any the stored scores name that it no longer has), with the points
    it contributes to the stored scores and its conversion figures, most points first."""
    points, contacts = _contributed(store.db.execute("SELECT contributions FROM scores"))
    scoring = tenant.scoring
    named = {rule_id: (rule.label or rule_id, scoring.rule_axis(rule))
             for rule_id, rule in zip(scoring.rule_ids(), scoring.rules, strict=True)}
    for rule_id in points.keys() - named.keys():
        named[rule_id] = (f"{rule_id} (not in the file now)", "-")
    found = [_rule(rule_id, label, axis, points.get(rule_id, 0.0), contacts.get(rule_id, 0),
                   conversion.get(rule_id)) for rule_id, (label, axis) in named.items()]
    return tuple(sorted(found, key=lambda rule: -rule.points))


def _contributed(rows: Iterable[Sequence[str]]) -> tuple[dict[str, float], Counter[str]]:
    points: dict[str, float] = {}
    contacts: Counter[str] = Counter()
    for (text,) in rows:
        for contribution in orjson.loads(text):
            rule_id = contribution["rule_id"]
            points[rule_id] = points.get(rule_id, 0.0) + float(contribution["points"])
            contacts[rule_id] += 1
    return points, contacts


def _rule(rule_id: str, label: str, axis: str, points: float, contacts: int,
          tally: tuple[int, int, int, int] | None) -> RuleFigures:
    if tally is None:
        return RuleFigures(rule_id, label, axis, points, contacts)
    fired, fired_conversions, unfired, unfired_conversions = tally
    return RuleFigures(rule_id, label, axis, points, contacts, fired,
                       fired_conversions / fired if fired else None, unfired,
                       unfired_conversions / unfired if unfired else None)
