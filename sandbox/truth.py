"""The sandbox's ground truth: each generated person's true chance of converting, as the synthetic model draws it.

For benchmarks only. The product never reads it and no route serves it: a benchmark builds it beside the sandbox
and compares any score with it on the same data, as the best a score could do::

    truth = GroundTruth(sandbox.crm.tenant)
    index = sandbox.crm.ids.to_index(contact_id)
    truth.truth(index)                              # P(the person ever converts)
    truth.truth_within(index, as_of_ms, horizon_ms)  # P(converts in (as_of, as_of + horizon] | open at as_of)

**The model** (:func:`leadpulse.sandbox.synth.draw_conversion`, the code the tenant's people are drawn with): a
person converts with probability ``conversion_probability(fit, interest)``; a convert converts at
``created + floor((touched - created) * U)``, with ``created`` and ``touched`` the person's timeline (creation and
last touch) and ``U`` uniform over ``CONVERSION_SPAN``, the latter half of that span. Two words of the person's own
stream decide the two, apart from each other and from everything else about the person.

**What** ``truth_within`` **assumes**:

- *Moments.* A person is open at ``as_of`` when created at or before it and not converted at or before it; they
  convert within the horizon when ``as_of < converted_ms <= as_of + horizon``. Windows open on the left tile the
  timeline, so chances over successive windows chain: ``q(a, h1 + h2) = q(a, h1) + (1 - q(a, h1)) * q(a + h1, h2)``
  for a person still open at ``a + h1``.
- *Who is not open gets 0.* A person created after ``as_of`` was no contact yet; a person the draw converted at or
  before ``as_of`` is converted already. Both are visible at ``as_of``, and a backtest leaves both out, so summing
  ``truth_within`` over every person gives the expected number of conversions among the open ones.
- *Everyone else gets the model's conditional chance*, ``p * (F(as_of + h) - F(as_of)) / (1 - p * F(as_of))``,
  with ``F`` the distribution of the conversion moment above. It reads only the person's traits and timeline, never
  the draw's outcome after ``as_of``.
- *An oracle, not a forecast.* The timeline includes the last touch, which may lie after ``as_of`` and bounds when the
  person can convert (open, but last touched before ``as_of``: 0). So this is the best chance given everything the
  model knows but its two conversion words, more than a score built from what was visible at ``as_of`` can know.
- *U continuous.* The draw takes ``U`` on a grid of ``2**-32`` steps; ``F`` takes it continuous and counts the cut to
  the millisecond exactly, so ``F`` is the draw's own distribution to within a few ``2**-32``.
- *Generated people only.* Edits through the API (a client writing ``converted``, a moved ``updated_ms``) change no
  truth, and contacts added after generation have none (:class:`UnknownPerson`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .synth import CONVERSION_SPAN, Tenant, conversion_probability


class UnknownPerson(IndexError):
    """The index names no generated person of the tenant, so there is no truth about it."""


@dataclass(frozen=True, slots=True)
class Prospect:
    """One generated person's conversion as the model draws it: the chance, the timeline, and the draw's outcome."""

    probability: float
    created_ms: int
    touched_ms: int
    converted_ms: int | None

    def open_at(self, as_of_ms: int) -> bool:
        """Created at or before ``as_of_ms`` and, by the draw, not converted at or before it."""
        return self.created_ms <= as_of_ms and (self.converted_ms is None or self.converted_ms > as_of_ms)

    def converted_by(self, moment_ms: int) -> float:
        """The model's chance that the person has converted at or before ``moment_ms``: ``p * F(moment)``."""
        return self.probability * self._timing(moment_ms)

    def within(self, as_of_ms: int, horizon_ms: int) -> float:
        """The chance that the person, open at ``as_of_ms``, converts within ``horizon_ms`` after it (0 if not open).

        :raises ValueError: if ``horizon_ms`` is negative.
        """
        if horizon_ms < 0:
            raise ValueError(f"horizon_ms must be 0 or more, got {horizon_ms}")
        if not self.open_at(as_of_ms):
            return 0.0
        before = self.converted_by(as_of_ms)
        return (self.converted_by(as_of_ms + horizon_ms) - before) / (1 - before)

    def _timing(self, moment_ms: int) -> float:
        """F(moment): the share of conversion moments at or before ``moment_ms``, for a person who converts."""
        span = self.touched_ms - self.created_ms
        # converted_ms <= moment exactly when span * U < moment + 1 - created, as the draw floors to the millisecond
        reach = moment_ms + 1 - self.created_ms
        low, high = span * CONVERSION_SPAN[0], span * CONVERSION_SPAN[1]
        if reach <= low:
            return 0.0
        if reach >= high:
            return 1.0
        return (reach - low) / (high - low)


class GroundTruth:
    """The true conversion chances of a tenant's generated people, by index (``crm.ids.to_index`` maps a wire id).

    Each call rebuilds the person; a caller asking about many moments takes :meth:`prospect` once per person.
    """

    def __init__(self, tenant: Tenant):
        self.tenant = tenant

    def prospect(self, index: int) -> Prospect:
        """Person ``index``'s conversion as drawn, from the same traits and timeline the draw read.

        :raises UnknownPerson: if ``index`` is not one of the tenant's generated people.
        """
        if not 0 <= index < self.tenant.size:
            raise UnknownPerson(f"tenant seed={self.tenant.seed} has no generated person {index}: truth covers "
                                f"indexes 0 to {self.tenant.size - 1}; contacts added later have none")
        person = self.tenant.person(index)
        return Prospect(conversion_probability(person.fit, person.interest), person.created_ms, person.updated_ms,
                        person.converted_ms)

    def truth(self, index: int) -> float:
        """The chance that person ``index`` ever converts, in [0, 1]."""
        return self.prospect(index).probability

    def truth_within(self, index: int, as_of_ms: int, horizon_ms: int) -> float:
        """The chance that person ``index``, open at ``as_of_ms``, converts within ``horizon_ms`` after it; 0 for a
        person created after ``as_of_ms`` or converted at or before it (see the module's notes)."""
        return self.prospect(index).within(as_of_ms, horizon_ms)
