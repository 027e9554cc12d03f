"""A tenant, as its file describes it: which CRM and how to reach it, which fields to read, the scoring rules,
what to write back and when to create a task. Validated once (see `leadpulse.core.config.files`), then trusted.

Secrets are only ever references (``{env: NAME}`` or ``{file: PATH}``); their values are read by
`TenantConfig.resolve_secrets` and never appear in an error. See ``config/hubspot.yaml`` for a complete,
commented tenant file.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from leadpulse.core.config.examples import Examples, ExampleSection
from leadpulse.core.contract import PropertySpec, TaskPriority
from leadpulse.core.engine.cards import CardColumns
from leadpulse.core.engine.rules import CONTACT_ATTRIBUTES, FitRule, Quadrant, ScoringConfig, placed_leaves
from leadpulse.core.engine.scoring import ScoreCard, StatusChange
from leadpulse.core.errors import ConfigError
from leadpulse.core.model import Contact, Lifecycle
from leadpulse.core.schedule import Duration, Schedule, format_duration
from leadpulse.core.strict import Strict, refuse, show

_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SecretRef(Strict):
    """Where a secret lives: an environment variable, or a file (relative to the tenant file's folder)."""

    env: str | None = Field(None, pattern=_ENV_NAME)
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _never_literal(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            kind = "a literal value" if isinstance(data, str | int | float) else show(data)
            raise refuse("a reference {env: NAME} or {file: PATH} (secrets never live in the tenant file)", kind)
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise refuse("exactly one of env or file", "both" if self.env else "neither")
        return self

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"


class CrmConfig(Strict):
    """Which CRM, how to reach it (validated by that CRM's settings model), and where its secrets live."""

    kind: str = Field(pattern=_NAME)
    connection: Any = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)


class Output(StrEnum):
    """The values leadpulse owns in the CRM."""

    SCORE = "score"
    FIT = "fit"
    ENGAGEMENT = "engagement"
    GRADE = "grade"
    BAND = "band"
    QUADRANT = "quadrant"
    REASONS = "reasons"


class WritebackConfig(Strict):
    """Which CRM property receives each output (an output left out is not written), and the status policy."""

    properties: dict[Output, str] = Field(default_factory=dict)
    status_property: str | None = None
    write_status: bool = False
    reasons: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _status_needs_property(self) -> WritebackConfig:
        if self.write_status and not self.status_property:
            raise refuse("a status_property when write_status is true", "none", ("status_property",))
        return self

    def values_for(self, card: ScoreCard) -> dict[str, Any]:
        """CRM property name -> value for one score card (status is separate: see `Engine.decide_status`)."""
        return self.reader()(card)

    def reader(self) -> Callable[[ScoreCard], dict[str, Any]]:
        """`values_for`, worked out once for a pass over many cards: only the outputs the tenant maps are read,
        without looking each up by its enum member (which hashes in Python) per card."""
        readers = [(crm_name, _OUTPUTS[output]) for output, crm_name in self.properties.items()]
        n = self.reasons
        return lambda card: {crm_name: read(card, n) for crm_name, read in readers}

    def values_of(self, cards: CardColumns, places: Sequence[int]) -> list[dict[str, Any]]:
        """`values_for` of the cards at `places` among `cards`, read output by output from their fields."""
        names = list(self.properties.values())
        columns = [_COLUMN_OUTPUTS[output](cards, places, self.reasons) for output in self.properties]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if columns \
            else [{} for _ in places]


#: How each output is read off a score card, given how many reasons the tenant writes.
_OUTPUTS: dict[Output, Callable[[ScoreCard, int], Any]] = {
    Output.SCORE: lambda card, _: card.total,
    Output.FIT: lambda card, _: card.axes.get("fit"),
    Output.ENGAGEMENT: lambda card, _: card.axes.get("engagement"),
    Output.GRADE: lambda card, _: card.grade,
    Output.BAND: lambda card, _: card.band,
    Output.QUADRANT: lambda card, _: card.quadrant._value_ if card.quadrant else None,
    Output.REASONS: lambda card, n: "; ".join(card.reasons(n)),
}


def _picked(values: Sequence[Any], places: Sequence[int]) -> list[Any]:
    return list(map(values.__getitem__, places))


def _axis(cards: CardColumns, name: str, places: Sequence[int]) -> list[Any]:
    values = cards.axes.get(name)
    return _picked(values, places) if values is not None else [None] * len(places)


#: The same outputs read off the fields of many cards (see `leadpulse.core.engine.cards.CardColumns`), for the
#: cards at some places among them.
_COLUMN_OUTPUTS: dict[Output, Callable[[CardColumns, Sequence[int], int], list[Any]]] = {
    Output.SCORE: lambda cards, places, _: _picked(cards.totals, places),
    Output.FIT: lambda cards, places, _: _axis(cards, "fit", places),
    Output.ENGAGEMENT: lambda cards, places, _: _axis(cards, "engagement", places),
    Output.GRADE: lambda cards, places, _: _picked(cards.grades, places),
    Output.BAND: lambda cards, places, _: _picked(cards.bands, places),
    # each quadrant as its value: the card's member's
    Output.QUADRANT: lambda cards, places, _: _picked(cards.quadrants, places),
    Output.REASONS: lambda cards, places, n: ["; ".join(reasons) for reasons in cards.reasons(places, n)],
}


_PLACEHOLDERS = ("name", "email", "score", "fit", "engagement", "band", "grade", "quadrant", "status", "reasons")


class TaskPolicy(Strict):
    """When a follow-up task is created for the contact's owner, and what it says.

    A task is due when a contact enters one of `on_bands` from a lower band, or moves to one of `on_statuses`.
    `subject` and `body` may use {name}, {email}, {score}, {fit}, {engagement}, {band}, {grade}, {quadrant},
    {status} and {reasons}.
    """

    enabled: bool = True
    on_bands: tuple[str, ...] = ()
    on_statuses: tuple[Lifecycle, ...] = ()
    priority: TaskPriority = TaskPriority.HIGH
    due_in: Duration = timedelta(days=1)
    subject: str = "Follow up: {name} scored {score} ({band}): {reasons}"
    body: str = "Why: {reasons}"

    @field_validator("subject", "body")
    @classmethod
    def _known_placeholders(cls, text: str) -> str:
        for name in re.findall(r"{([^{}]*)}", text):
            if name not in _PLACEHOLDERS:
                raise refuse(f"placeholders among {{{'}, {'.join(_PLACEHOLDERS)}}}", "{" + name + "}")
        return text

    def trigger(
        self,
        band_names: Sequence[str],
        before: str | None,
        band: str,
        change: StatusChange | None,
        last_status: str | None = None,
    ) -> str | None:
        """The event that calls for a task (``band:qualified``, ``status:sql``), or None, for a new score in `band`.

        `before` is the band saved last; `last_status` the lifecycle value leadpulse set last. A move to that same
        status (the CRM has not caught up yet, or never will: the write is off or parked) had its task already.
        """
        if not self.enabled:
            return None
        if change is not None and change.to in self.on_statuses and change.to.value != last_status:
            return f"status:{change.to.value}"
        # a band name from older rules ranks below every current band
        rising = before not in band_names or band_names.index(band) > band_names.index(before)
        if band in self.on_bands and band != before and rising:
            return f"band:{band}"
        return None

    def render(self, contact: Contact, card: ScoreCard, status: str | None = None) -> tuple[str, str]:
        """The task's subject and body for this contact and score."""
        values = {
            "name": contact.name or contact.email or contact.id, "email": contact.email or "",
            "score": f"{card.total:g}", "fit": f"{card.axes.get('fit', 0):g}",
            "engagement": f"{card.axes.get('engagement', 0):g}", "band": card.band, "grade": card.grade or "-",
            "quadrant": card.quadrant.value.replace("_", " ") if card.quadrant else "-",
            "status": status or contact.status or "-",
            "reasons": "; ".join(card.reasons(3)) or "no rule matched",
        }
        return self.subject.format(**values), self.body.format(**values)


class TenantConfig(Strict):
    """One tenant, as its file describes it. Build it with `load_tenant`."""

    name: str = Field(alias="tenant", pattern=_NAME)
    description: str | None = None
    source_path: Path = Field(Path("."), exclude=True)
    crm: CrmConfig
    schedule: Schedule = Schedule(every=timedelta(minutes=15))
    store: Path | None = None
    #: a run skipping more than this share of what it read, or with more of its writes refused, is partial
    tolerance: float = Field(0.01, ge=0, le=1)
    fields: dict[str, str] = Field(default_factory=dict)
    scoring: ScoringConfig
    writeback: WritebackConfig = WritebackConfig()
    tasks: TaskPolicy = TaskPolicy(enabled=False)
    examples: ExampleSection = Examples()

    @classmethod
    def accepted_keys(cls) -> set[str]:
        return super().accepted_keys() - {"source_path"}

    @field_validator("fields")
    @classmethod
    def _neutral_names(cls, fields: dict[str, str]) -> dict[str, str]:
        for name in fields:
            if not re.match(r"^[a-z][a-z0-9_]*$", name) or name in CONTACT_ATTRIBUTES:
                raise refuse("a lowercase neutral name that is not a contact attribute", show(name), (name,))
        return fields

    @model_validator(mode="after")
    def _cross_checks(self) -> TenantConfig:
        _check_fields_read(self)
        _check_writeback(self)
        _check_tasks(self)
        return self

    def store_path(self, state_dir: Path) -> Path:
        """The tenant's SQLite file: `store` (relative to the tenant file's folder) or ``<state_dir>/<name>.sqlite``."""
        if self.store is None:
            return state_dir / f"{self.name}.sqlite"
        return self.store if self.store.is_absolute() else self.source_path.parent / self.store

    def properties_to_read(self) -> tuple[str, ...]:
        """CRM properties the connector must pull: the `fields` map's targets and every ``raw.`` name a rule reads."""
        raw = sorted(name[4:] for name in self.scoring.fields_read() if name.startswith("raw."))
        return tuple(dict.fromkeys([*self.fields.values(), *raw]))

    def property_specs(self) -> list[PropertySpec]:
        """The properties leadpulse writes, for `Connector.ensure_properties`."""
        options = {
            Output.BAND: tuple(step.name for step in self.scoring.bands),
            Output.GRADE: tuple(step.name for step in self.scoring.grades or ()),
            Output.QUADRANT: tuple(quadrant.value for quadrant in Quadrant),
        }
        specs = []
        for output, crm_name in self.writeback.properties.items():
            kind = "number" if output in (Output.SCORE, Output.FIT, Output.ENGAGEMENT) else "string"
            kind = "enumeration" if output in options else kind
            label = f"Lead {output.value}" if output != Output.SCORE else "Lead score"
            specs.append(PropertySpec(crm_name, label, kind, options.get(output, ())))
        return specs

    def resolve_secrets(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The values of the tenant's secrets.

        :raises ConfigError: naming the tenant, the variable or file, and what to do; never a secret's value.
        """
        return {name: _read_secret(self, name, ref, environ) for name, ref in self.crm.secrets.items()}

    def summary(self) -> str:
        """A few lines saying what this tenant file sets up, for ``leadpulse validate``."""
        return "\n".join(_summary_lines(self))


def _check_fields_read(tenant: TenantConfig) -> None:
    known = set(tenant.fields) | CONTACT_ATTRIBUTES
    for index, rule in enumerate(tenant.scoring.rules):
        if not isinstance(rule, FitRule):
            continue
        for at, leaf in placed_leaves(rule.when):
            name = leaf.field.removeprefix("fields.")
            if name not in known and not (leaf.field.startswith("raw.") and len(leaf.field) > 4):
                names = ", ".join(sorted(tenant.fields))
                expected = f"a name from fields ({names}), a contact attribute or raw.<property>"
                raise refuse(expected, show(leaf.field), ("scoring", "rules", index, "when", *at, "field"))


def _check_writeback(tenant: TenantConfig) -> None:
    if tenant.writeback.write_status and tenant.scoring.lifecycle is None:
        raise refuse("a scoring.lifecycle section when writeback.write_status is true", "none",
                     ("writeback", "write_status"))
    if Output.GRADE in tenant.writeback.properties and not tenant.scoring.grades:
        raise refuse("a scoring.grades section to write a grade from", "none", ("writeback", "properties", "grade"))
    single = tenant.scoring.single_axis
    if single is not None:
        for output in (Output.QUADRANT, Output.FIT, Output.ENGAGEMENT):
            if output in tenant.writeback.properties and output.value not in tenant.scoring.axes:
                raise refuse(f"no {output.value} (the tenant scores on the single axis {single!r}: write its score)",
                             tenant.writeback.properties[output], ("writeback", "properties", output.value))


def _check_tasks(tenant: TenantConfig) -> None:
    bands = [step.name for step in tenant.scoring.bands]
    for index, band in enumerate(tenant.tasks.on_bands):
        if band not in bands:
            raise refuse(f"one of the bands {', '.join(bands)}", show(band), ("tasks", "on_bands", index))
    if tenant.tasks.on_statuses and tenant.scoring.lifecycle is None:
        raise refuse("a scoring.lifecycle section for status triggers", "none", ("tasks", "on_statuses"))


def _read_secret(tenant: TenantConfig, name: str, ref: SecretRef, environ: Mapping[str, str]) -> str:
    key_path = f"crm.secrets.{name}.{'env' if ref.env else 'file'}"
    if ref.env is not None:
        value = environ.get(ref.env)
        if value and value.strip():
            return _one_line(tenant, key_path, f"environment variable {ref.env}", value.strip())
        expected = f"environment variable {ref.env} set for tenant {tenant.name!r} (export it, or use {{file: PATH}})"
        raise ConfigError(tenant.source_path, key_path, expected, "it unset" if value is None else "it empty")
    assert ref.file is not None
    path = ref.file if ref.file.is_absolute() else tenant.source_path.parent / ref.file
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        expected = f"a readable secrets file for tenant {tenant.name!r} at {path}"
        raise ConfigError(tenant.source_path, key_path, expected, exc.strerror or "it unreadable") from None
    if not value:
        raise ConfigError(tenant.source_path, key_path, f"a secret in {path}", "an empty file")
    return _one_line(tenant, key_path, str(path), value)


def _one_line(tenant: TenantConfig, key_path: str, where: str, value: str) -> str:
    """`value`, if it has no line break or other control character inside (it goes into HTTP headers)."""
    # Whitespace around a secret (the newline a file or `kubectl create secret --from-file` leaves) is stripped
    # by the callers; one inside is a pasting mistake. Only its position is shown, never the value.
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc":
            raise ConfigError(tenant.source_path, key_path,
                              f"a one-line secret in {where} for tenant {tenant.name!r} (set it again without "
                              "line breaks)", f"a control character at position {position + 1}")
    return value


def _summary_lines(tenant: TenantConfig) -> list[str]:
    scoring = tenant.scoring
    ladder = " < ".join(step.name if step.min is None else f"{step.min:g} <= {step.name}" for step in scoring.bands)
    secrets = ", ".join(f"{name} from {ref.describe()}" for name, ref in tenant.crm.secrets.items()) or "none"
    axes = ", ".join(f"{name} x{axis.weight:g}" for name, axis in scoring.axes.items())
    lines = [
        f"{tenant.name} ({tenant.source_path})",
        f"  crm: {tenant.crm.kind}; secrets: {secrets}",
        f"  schedule: {tenant.schedule.describe()}; partial beyond {tenant.tolerance:.0%} skipped or refused",
        f"  fields read: {', '.join(tenant.properties_to_read()) or 'none'}",
        f"  scoring: {len(scoring.rules)} rules on axes {axes}",
        f"  bands: {ladder}",
    ]
    if scoring.grades:
        lines.append(f"  grades (fit): {', '.join(step.name for step in scoring.grades)}")
    if scoring.quadrant is not None:
        lines.append(f"  quadrant: fit >= {scoring.quadrant.fit:g}, engagement >= {scoring.quadrant.engagement:g}")
    if scoring.lifecycle:
        moves = ", ".join(t.to.value for t in scoring.lifecycle.transitions) or "none"
        policy = "demotion allowed" if scoring.lifecycle.allow_demotion else "forward only"
        lines.append(f"  lifecycle: transitions to {moves}; {policy}")
    written = ", ".join(f"{o.value}->{p}" for o, p in tenant.writeback.properties.items()) or "nothing"
    status = f"; status -> {tenant.writeback.status_property}" if tenant.writeback.write_status else ""
    lines.append(f"  writeback: {written}{status}")
    if tenant.tasks.enabled:
        events = [*(f"band {b}" for b in tenant.tasks.on_bands),
                  *(f"status {s.value}" for s in tenant.tasks.on_statuses)]
        due, priority = format_duration(tenant.tasks.due_in), tenant.tasks.priority.value
        lines.append(f"  tasks: on {', '.join(events) or 'nothing'}; {priority} priority, due in {due}")
    else:
        lines.append("  tasks: off")
    return lines
