"""Arithmetic over columns that gives, bit for bit, what the per-contact engine's Python arithmetic gives.

Three places where numpy's own answer may differ from Python's by an ulp, each fixed the same way: compute
column-wise, find the few values too close to a decision for the column-wise answer to be trusted, and work those
out as the engine does, one by one.

- `round_half_up`: the engine's rounding to cents, ties as the decimal text reads. A value is unsure only when
  a hundred times it lies within a millionth of a half.
- `halvings`: ``0.5 ** x``, which Python takes from the C library's ``pow``; numpy's own power differs from it
  in the last bit for about one value in twenty. Extended precision gives the right double except near a midpoint
  between two doubles (about one value in twenty-five, then computed by Python).
- `ordered_sums`: Python's ``sum()`` of a list adds left to right (from 3.12 with Neumaier's compensation);
  numpy's reductions add pairwise. Groups are summed one position at a time, every group at once.

And `ordered_by`, the order of two integer keys that numpy's ``lexsort`` gives, many times sooner.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.scoring import round_half_up as _round_one

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: beyond this many cents a float's rounding error reaches the window below, so such values go one by one
_LARGEST_SURE = float(2**28)
_TIE_WINDOW = 1e-6
#: how near (in ulps of a double) to the midpoint between two doubles an extended-precision power must fall to be
#: unsure: numpy's extended power strays up to about 0.006 ulp from the true value, so about 4% of values are
#: unsure and computed by Python's own power
_MIDPOINT_WINDOW = 0.02
_EXTENDED = np.finfo(np.longdouble).nmant >= 63
_COMPENSATED_SUM = sys.version_info >= (3, 12)


def round_half_up(values: Floats) -> Floats:
    """Each value to 2 decimals exactly as `leadpulse.core.engine.scoring.round_half_up` rounds it."""
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 100.0
    rounded: Floats = np.copysign(np.floor(scaled + 0.5) / 100.0, values)
    with np.errstate(invalid="ignore"):
        unsure = (np.abs(scaled - np.floor(scaled) - 0.5) < _TIE_WINDOW) | ~(np.abs(scaled) < _LARGEST_SURE)
    if unsure.any():
        rounded[unsure] = [_round_one(value) for value in values[unsure].tolist()]
    return rounded


def halvings(exponents: Floats) -> Floats:
    """``0.5 ** x`` for each x, as Python's float power (the C library's ``pow``) computes it."""
    exponents = np.asarray(exponents, dtype=np.float64)
    if not _EXTENDED:  # no wider float to decide with: every value as Python does it
        return np.array([0.5**x for x in exponents.tolist()], dtype=np.float64)
    wide = np.power(np.longdouble(0.5), exponents.astype(np.longdouble))
    near: Floats = wide.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs((wide - near.astype(np.longdouble)) / np.spacing(near).astype(np.longdouble))
        # a power of two has a finer spacing below it than above: treat it as unsure too
        unsure = (np.abs(gap - 0.5) < _MIDPOINT_WINDOW) | (np.frexp(near)[0] == 0.5) | ~np.isfinite(gap)
        unsure |= near < 1e-300
    if unsure.any():
        near[unsure] = [0.5**x for x in exponents[unsure].tolist()]
    return near


def ordered_sums(groups: Ints, values: Floats, size: int) -> Floats:
    """Per group (0 .. size-1), the sum of its values in the order given, as Python's ``sum()`` of a list of them
    adds; 0 for a group with none. `groups` must be contiguous (every group's values together)."""
    counts = np.bincount(groups, minlength=size)
    starts = np.cumsum(counts) - counts
    longest_first = np.argsort(-counts, kind="stable")
    lengths = counts[longest_first]
    firsts = starts[longest_first]
    # how many groups have more than p values, for each position p
    active = np.searchsorted(-lengths, -np.arange(int(lengths[0]) if size else 0), side="left")
    totals = np.zeros(size, dtype=np.float64)
    if not size or lengths[0] == 0:
        return totals
    live = int(active[0])
    acc = values[firsts[:live]].copy()
    spill = np.zeros(live, dtype=np.float64)
    for position in range(1, int(lengths[0])):
        k = int(active[position])
        item = values[firsts[:k] + position]
        if _COMPENSATED_SUM:
            head = acc[:k]
            step = head + item
            spill[:k] += np.where(np.abs(head) >= np.abs(item), (head - step) + item, (item - step) + head)
            acc[:k] = step
        else:
            acc[:k] += item
    if _COMPENSATED_SUM:
        fix = (spill != 0) & np.isfinite(spill)
        acc[fix] += spill[fix]
    totals[longest_first[:live]] = acc
    return totals


def ordered_by(major: Ints, minor: Ints) -> Ints:
    """The positions ordered by `major`, then `minor`, equal pairs in place order: ``np.lexsort((minor, major))``.
    Sorted as one integer key when both fit in one (about twenty times sooner for a chunk's rows, which mostly come
    ordered by `major` already)."""
    if not len(major):
        return np.lexsort((minor, major))
    major_from, minor_from = int(major.min()), int(minor.min())
    shift = (int(minor.max()) - minor_from).bit_length()
    if (int(major.max()) - major_from).bit_length() + shift > 62:
        return np.lexsort((minor, major))
    key = ((major.astype(np.int64) - major_from) << shift) + (minor.astype(np.int64) - minor_from)
    found: Ints = np.argsort(key, kind="stable")
    return found
