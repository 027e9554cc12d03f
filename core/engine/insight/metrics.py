"""The figures of a backtest: does the score predict conversion?

A backtest scores every contact as it stood at each of several past moments, leaves out those who had converted
by then, and asks which of the rest converted within a horizon after the moment. This module turns those rows into
figures, for each moment and pooled over the moments (a contact counts once for each moment it was scored at):

- per band, in the ladder's order: contacts, their share, conversions, the conversion rate, the share of all
  conversions; and the lift of the top band, its rate over the average rate;
- the AUC of the total score and of each axis: the chance that a contact who converted scored above one who did
  not, a tie counting as half (the Mann-Whitney U over the number of such pairs, from average ranks: exact for ties);
- per quadrant, per grade and per lifecycle status the rules would have set: contacts, their share, conversions,
  the rate;
- the calibration of the band rates: each band's rate at every moment, with their mean, spread, minimum and maximum.

A figure without a value is None, never a division error: a band with no contacts has no rate, a moment at which
nobody (or everybody) converted has no AUC, and the moment's `notes` say why in words.

The input is columns, one row per contact, so that a column-wise evaluator hands over the arrays it computed and the
per-contact engine builds the same from its score cards (`ScoredMoment.from_contacts`): nothing here depends on how
a score was made.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "BacktestFigures",
    "BandCalibration",
    "Category",
    "GroupFigures",
    "MomentFigures",
    "ScoredContact",
    "ScoredMoment",
    "auc",
    "backtest_figures",
    "concatenated",
]

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]
Codes = npt.NDArray[np.intp]

#: a grade or quadrant column's value for a contact without one (a tenant scoring on a single axis has no quadrant)
NO_NAME = ""


@dataclass(frozen=True, eq=False)
class Category:
    """A column of names (bands, grades, quadrants, statuses) held as codes into `names`, its distinct names: two
    bytes a row however long the names, so a backtest of millions of contact-moments stays small."""

    codes: npt.NDArray[np.int16]
    names: tuple[str, ...]

    @classmethod
    def of(cls, column: Category | npt.ArrayLike) -> Category:
        """`column` as a category: a category as it is, a sequence or array of names coded."""
        if isinstance(column, Category):
            return column
        names, codes = np.unique(np.asarray(column, dtype=np.str_), return_inverse=True)
        return cls(codes.reshape(-1).astype(np.int16), tuple(str(name) for name in names))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Any) -> Category:
        return Category(self.codes[index], self.names)

    def tolist(self) -> list[str]:
        return [self.names[code] for code in self.codes.tolist()]

    def met(self) -> list[str]:
        """The names that occur, in alphabetical order."""
        return sorted(self.names[code] for code in np.unique(self.codes).tolist())

    def coded(self, listed: Sequence[str]) -> Codes:
        """Each row as the position of its name in `listed`, -1 for a name `listed` lacks."""
        table = np.array([listed.index(name) if name in listed else -1 for name in self.names] or [-1],
                         dtype=np.intp)
        return table[self.codes]

    @classmethod
    def concatenate(cls, parts: Sequence[Category]) -> Category:
        names = tuple(sorted({name for part in parts for name in part.names}))
        return cls(np.concatenate([part.coded(names).astype(np.int16) for part in parts]), names)


@dataclass(frozen=True, slots=True)
class ScoredContact:
    """One contact at one moment of a backtest: its score as the rules gave it then, and its outcome.

    `converted` is whether it converted within the horizon after the moment; `converted_before`, whether it had
    converted at or before the moment (such a contact is left out of every figure).
    """

    total: float
    band: str
    converted: bool
    converted_before: bool = False
    axes: Mapping[str, float] = field(default_factory=dict)
    grade: str | None = None
    quadrant: str | None = None
    #: the lifecycle status the rules would have set by the moment
    status: str | None = None


@dataclass(frozen=True, eq=False)
class ScoredMoment:
    """The contacts scored at one moment of a backtest, as columns of equal length (one row per contact).

    Columns given as sequences are turned into arrays, and the name columns into a `Category` (pass one to skip the
    coding). `grade`, `quadrant` and `status` are None when the rules give none, and hold "" for a contact without
    one.

    :raises ValueError: if the columns differ in length, or a total or an axis value is not a finite number
    """

    at: datetime
    total: Floats
    band: Category
    converted: Flags
    converted_before: Flags
    axes: Mapping[str, Floats] = field(default_factory=dict)
    grade: Category | None = None
    quadrant: Category | None = None
    status: Category | None = None

    def __post_init__(self) -> None:
        columns: dict[str, Any] = {
            "total": np.asarray(self.total, dtype=np.float64), "band": Category.of(self.band),
            "converted": np.asarray(self.converted, dtype=np.bool_),
            "converted_before": np.asarray(self.converted_before, dtype=np.bool_),
            "axes": {name: np.asarray(values, dtype=np.float64) for name, values in self.axes.items()},
            "grade": None if self.grade is None else Category.of(self.grade),
            "quadrant": None if self.quadrant is None else Category.of(self.quadrant),
            "status": None if self.status is None else Category.of(self.status),
        }
        for name, value in columns.items():
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        named = {"total": self.total, "band": self.band, "converted": self.converted,
                 "converted_before": self.converted_before, "grade": self.grade, "quadrant": self.quadrant,
                 "status": self.status, **{f"axis {name!r}": values for name, values in self.axes.items()}}
        shapes = {name: column.shape for name, column in named.items() if column is not None}
        if len(set(shapes.values())) > 1 or len(self.total.shape) != 1:
            raise ValueError(f"moment {self.at.isoformat()}: every column needs one value per contact, found "
                             f"shapes {', '.join(f'{name} {shape}' for name, shape in shapes.items())}")
        for name, column in named.items():
            if isinstance(column, np.ndarray) and column.dtype == np.float64 and not np.isfinite(column).all():
                row = int(np.flatnonzero(~np.isfinite(column))[0])
                raise ValueError(f"moment {self.at.isoformat()}: {name} of row {row} is {column[row]}, "
                                 "expected a finite number")

    @classmethod
    def from_contacts(cls, at: datetime, contacts: Iterable[ScoredContact]) -> ScoredMoment:
        """The moment's columns from one `ScoredContact` per contact (what the per-contact engine gives)."""
        rows = list(contacts)
        axes = list(dict.fromkeys(name for row in rows for name in row.axes))  # in the order the rules name them
        has_grade, has_quadrant, has_status = (any(row.grade is not None for row in rows),
                                               any(row.quadrant is not None for row in rows),
                                               any(row.status is not None for row in rows))
        return cls(
            at=at,
            total=np.array([row.total for row in rows], dtype=np.float64),
            band=Category.of([row.band for row in rows]),
            converted=np.array([row.converted for row in rows], dtype=np.bool_),
            converted_before=np.array([row.converted_before for row in rows], dtype=np.bool_),
            # a row without an axis the others have reads NaN, which the check refuses naming the row
            axes={name: np.array([row.axes.get(name, np.nan) for row in rows], dtype=np.float64) for name in axes},
            grade=Category.of([row.grade or NO_NAME for row in rows]) if has_grade else None,
            quadrant=Category.of([row.quadrant or NO_NAME for row in rows]) if has_quadrant else None,
            status=Category.of([row.status or NO_NAME for row in rows]) if has_status else None,
        )


def concatenated(parts: Sequence[ScoredMoment]) -> ScoredMoment:
    """The rows of `parts`, scored at one moment (in chunks of contacts), as one moment."""
    first = parts[0]

    def joined(column: str) -> Any:
        return np.concatenate([getattr(part, column) for part in parts])

    def names(column: str) -> Category | None:
        found = [getattr(part, column) for part in parts]
        return None if found[0] is None else Category.concatenate(found)

    band = names("band")
    assert band is not None
    return ScoredMoment(
        at=first.at, total=joined("total"), band=band, converted=joined("converted"),
        converted_before=joined("converted_before"),
        axes={name: np.concatenate([part.axes[name] for part in parts]) for name in first.axes},
        grade=names("grade"), quadrant=names("quadrant"), status=names("status"),
    )


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """The contacts of one band, quadrant or grade and their conversions. A share or rate whose denominator is
    zero is None."""

    name: str
    contacts: int
    contact_share: float | None
    conversions: int
    rate: float | None
    conversion_share: float | None


@dataclass(frozen=True, slots=True)
class MomentFigures:
    """The figures of one moment, or of every moment pooled (`at` is None then)."""

    at: datetime | None
    #: contacts scored and not converted at the moment: the population of every figure below
    contacts: int
    #: contacts left out because they had converted at or before the moment
    left_out: int
    conversions: int
    #: the average conversion rate
    rate: float | None
    #: in the ladder's order, lowest first
    bands: tuple[GroupFigures, ...]
    #: the top band's rate over the average rate
    lift: float | None
    auc: float | None
    axis_auc: dict[str, float | None]
    quadrants: tuple[GroupFigures, ...]
    grades: tuple[GroupFigures, ...]
    #: by the lifecycle status the rules would have set by the moment ("" for none)
    statuses: tuple[GroupFigures, ...]
    #: why a figure above is None, in words
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BandCalibration:
    """One band's conversion rate over the moments: how steady the rate a band promises is.

    `rates` has one entry per moment, None where the band had no contacts; the mean, the standard deviation (of the
    moments' rates themselves, so 0 for a single moment), the minimum and the maximum are over the `moments` that
    had contacts in the band, and None when none had.
    """

    band: str
    moments: int
    rates: tuple[float | None, ...]
    mean_rate: float | None
    std_rate: float | None
    min_rate: float | None
    max_rate: float | None


@dataclass(frozen=True, slots=True)
class BacktestFigures:
    """Everything a backtest shows: the figures of each moment, of all of them pooled, and the bands'
    calibration."""

    bands: tuple[str, ...]
    moments: tuple[MomentFigures, ...]
    pooled: MomentFigures
    calibration: tuple[BandCalibration, ...]

    def to_json(self) -> str:
        """The figures as JSON text, moments as ISO 8601 text, missing figures as null."""
        return orjson.dumps(self).decode()

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain dicts, lists, strings and numbers, as `to_json` writes them."""
        parsed: dict[str, Any] = orjson.loads(self.to_json())
        return parsed


def auc(scores: npt.ArrayLike, converted: npt.ArrayLike) -> float | None:
    """The chance that a contact who converted scored above one who did not, a tie counting as half: the
    Mann-Whitney U over the number of (converted, not converted) pairs. None when either group is empty.

    Counted from twice the average ranks, in integers, so ties are exact and the only rounding is the final division.
    """
    values = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(converted, dtype=np.bool_)
    positives = int(positive.sum())
    negatives = positive.size - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # the rank of the last member of each tie group, the groups in ascending order
    doubled_ranks = (2 * ends - counts + 1)[inverse.reshape(-1)]  # first rank + last rank of the contact's group
    doubled_u = int(doubled_ranks[positive].sum()) - positives * (positives + 1)
    return doubled_u / (2 * positives * negatives)


def backtest_figures(moments: Sequence[ScoredMoment], bands: Sequence[str], *, grades: Sequence[str] = (),
                     quadrants: Sequence[str] = (), statuses: Sequence[str] = ()) -> BacktestFigures:
    """The figures of a backtest over `moments`, whose bands are named in `bands` (the ladder, lowest first).

    Quadrants, grades and statuses are listed in the order given, then any other name met, in alphabetical order;
    one listed but never met has a row with no contacts. Every moment must carry the same axes.

    :raises ValueError: if there is no moment, the ladder is empty or names a band twice, a contact's band is not on
        the ladder, or the moments' axes differ
    """
    ladder = _ladder(bands)
    _check_axes(moments)
    kept = [_Kept.of(moment) for moment in moments]
    for moment, rows in zip(moments, kept, strict=True):
        _check_bands(moment.at, _unlisted(rows.band, ladder), ladder)
    names = _Names(ladder, _listed_then_met(grades, [rows.grade for rows in kept]),
                   _listed_then_met(quadrants, [rows.quadrant for rows in kept]),
                   _listed_then_met(statuses, [rows.status for rows in kept]))
    columns = [rows.encoded(names) for rows in kept]
    per_moment = tuple(_moment_figures(moment.at, encoded, names, left_out=rows.left_out)
                       for moment, rows, encoded in zip(moments, kept, columns, strict=True))
    pooled = _moment_figures(None, _Columns.concatenate(columns), names, left_out=sum(rows.left_out for rows in kept))
    return BacktestFigures(ladder, per_moment, pooled, _calibration(ladder, per_moment))


# -- from rows to figures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Names:
    bands: tuple[str, ...]
    grades: tuple[str, ...]
    quadrants: tuple[str, ...]
    statuses: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class _Kept:
    """A moment's rows of the contacts not converted at the moment; no grade, quadrant or status reads ""."""

    left_out: int
    total: Floats
    converted: Flags
    axes: Mapping[str, Floats]
    band: Category
    grade: Category
    quadrant: Category
    status: Category

    @classmethod
    def of(cls, moment: ScoredMoment) -> _Kept:
        keep = ~moment.converted_before
        absent = Category(np.zeros(int(keep.sum()), dtype=np.int16), (NO_NAME,))
        return cls(
            left_out=int(moment.converted_before.sum()), total=moment.total[keep], converted=moment.converted[keep],
            axes={name: values[keep] for name, values in moment.axes.items()}, band=moment.band[keep],
            grade=absent if moment.grade is None else moment.grade[keep],
            quadrant=absent if moment.quadrant is None else moment.quadrant[keep],
            status=absent if moment.status is None else moment.status[keep],
        )

    def encoded(self, names: _Names) -> _Columns:
        return _Columns(self.total, self.converted, self.axes, self.band.coded(names.bands),
                        self.grade.coded(names.grades), self.quadrant.coded(names.quadrants),
                        self.status.coded(names.statuses))


@dataclass(frozen=True, eq=False)
class _Columns:
    """Rows whose names are codes: the index of the name in its list, -1 for a contact without one."""

    total: Floats
    converted: Flags
    axes: Mapping[str, Floats]
    band: Codes
    grade: Codes
    quadrant: Codes
    status: Codes

    @classmethod
    def concatenate(cls, parts: Sequence[_Columns]) -> _Columns:
        def joined(column: str) -> Any:
            return np.concatenate([getattr(part, column) for part in parts])

        axes = {name: np.concatenate([part.axes[name] for part in parts]) for name in parts[0].axes}
        return cls(joined("total"), joined("converted"), axes, joined("band"), joined("grade"), joined("quadrant"),
                   joined("status"))


def _unlisted(column: Category, names: Sequence[str]) -> list[str]:
    """The names in `column` that `names` does not list (the empty one aside), in alphabetical order."""
    return [name for name in column.met() if name not in names and name != NO_NAME]


def _listed_then_met(listed: Sequence[str], columns: Iterable[Category]) -> tuple[str, ...]:
    others = {name for column in columns for name in _unlisted(column, listed)}
    return (*listed, *sorted(others))


def _moment_figures(at: datetime | None, rows: _Columns, names: _Names, *, left_out: int) -> MomentFigures:
    contacts, conversions = rows.total.size, int(rows.converted.sum())
    rate = _ratio(conversions, contacts)
    bands = _groups(names.bands, rows.band, rows.converted)
    top = bands[-1]
    lift = None if top.rate is None or not rate else top.rate / rate
    axis_auc = {name: auc(values, rows.converted) for name, values in rows.axes.items()}
    return MomentFigures(
        at=at, contacts=contacts, left_out=left_out, conversions=conversions, rate=rate, bands=bands, lift=lift,
        auc=auc(rows.total, rows.converted), axis_auc=axis_auc,
        quadrants=_groups(names.quadrants, rows.quadrant, rows.converted),
        grades=_groups(names.grades, rows.grade, rows.converted),
        statuses=_groups(names.statuses, rows.status, rows.converted),
        notes=_notes(contacts, conversions, top),
    )


def _groups(names: Sequence[str], codes: Codes, converted: Flags) -> tuple[GroupFigures, ...]:
    named = codes >= 0
    contacts = np.bincount(codes[named], minlength=len(names))
    conversions = np.bincount(codes[named & converted], minlength=len(names))
    everyone, every_conversion = codes.size, int(converted.sum())
    return tuple(
        GroupFigures(name, int(count), _ratio(int(count), everyone), int(won), _ratio(int(won), int(count)),
                     _ratio(int(won), every_conversion))
        for name, count, won in zip(names, contacts, conversions, strict=True)
    )


def _notes(contacts: int, conversions: int, top: GroupFigures) -> tuple[str, ...]:
    if contacts == 0:
        return ("no contact was scored here that had not already converted: there is no rate, lift or AUC",)
    notes = []
    if conversions == 0:
        notes.append("no contact converted within the horizon: AUC and lift are undefined")
    elif conversions == contacts:
        notes.append("every contact converted within the horizon: AUC is undefined")
    if top.contacts == 0:
        notes.append(f"the top band {top.name!r} has no contacts: lift is undefined")
    return tuple(notes)


def _calibration(ladder: Sequence[str], moments: Sequence[MomentFigures]) -> tuple[BandCalibration, ...]:
    found = []
    for position, band in enumerate(ladder):
        rates = tuple(moment.bands[position].rate for moment in moments)
        known = [rate for rate in rates if rate is not None]
        found.append(BandCalibration(
            band, len(known), rates,
            mean_rate=statistics.fmean(known) if known else None,
            std_rate=statistics.pstdev(known) if known else None,
            min_rate=min(known, default=None), max_rate=max(known, default=None),
        ))
    return tuple(found)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- checks at the edge ----------------------------------------------------------------------------------------


def _ladder(bands: Sequence[str]) -> tuple[str, ...]:
    ladder = tuple(bands)
    if not ladder or len(set(ladder)) != len(ladder):
        raise ValueError(f"expected the band ladder as distinct names, lowest first, found {list(ladder)}")
    return ladder


def _check_axes(moments: Sequence[ScoredMoment]) -> None:
    if not moments:
        raise ValueError("a backtest needs at least one moment, found none")
    first = sorted(moments[0].axes)
    for moment in moments[1:]:
        if sorted(moment.axes) != first:
            raise ValueError(f"moment {moment.at.isoformat()}: expected the axes {first} of moment "
                             f"{moments[0].at.isoformat()}, found {sorted(moment.axes)}")


def _check_bands(at: datetime, met: Sequence[str], ladder: Sequence[str]) -> None:
    unknown = [name for name in met if name not in ladder]
    if unknown:
        raise ValueError(f"moment {at.isoformat()}: contacts in the bands {unknown}, which the ladder "
                         f"{list(ladder)} does not name: give the ladder of the rules that scored them")
