"""The ``examples`` section of a tenant file: made-up contacts, their activities, and what the rules must make of
them. ``leadpulse validate`` scores each one as a sync would and fails when one gets something else, so a rule
change that breaks an example is caught before it goes live::

    examples:
      - name: VP at a target account
        as_of: 2025-03-01T09:00:00Z          # optional; see below
        contact: {title: VP Marketing, industry: COMPUTER_SOFTWARE, employees: 400, email: ana@acme.example}
        activities:
          - {kind: page_view, age: 2d, attributes: {url: /pricing}}
          - {kind: form_submit, at: 2025-02-20T10:00:00Z, attributes: {form: Request a demo}}
        expect: {score: 21, band: qualified, grade: A, quadrant: follow_up_now, status: sql}

- ``contact``: the tenant's neutral field names (its ``fields`` map), the contact attributes rules read (``email``,
  ``name``, ``owner_id``, ``status``: the CRM's own value, ``opted_out``, ``kind``, ``id``) and ``raw``, the vendor
  properties as pulled. Dates are kept as the ISO text a CRM sends.
- ``activities``: each a ``kind`` (``other`` when only a ``vendor_type`` is given), an ``age`` before the as-of
  moment (``3d``, ``6w``, ``3mo``) or an ``at`` moment, ``attributes``, and a ``count`` of alike ones (default 1).
- ``expect``: any of ``score`` (the total), ``axes`` (by name), ``band``, ``grade``, ``quadrant`` and ``status``,
  the lifecycle stage the rules move the contact to (``none``: no move, the contact's ``status`` as it stands and
  no earlier move by leadpulse). Scores compare at the 2 decimals the store keeps.

Each example is scored as of its own ``as_of``, else the one moment the section may set for all of them by taking
the mapping form ``{as_of: ..., cases: [...]}``, else `DEFAULT_AS_OF` (2025-01-01T00:00:00Z).

Whatever the examples name is checked against the rest of the file when it loads: a field the tenant does not read,
a band, grade, axis or stage its scoring does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    GetPydanticSchema,
    Tag,
    ValidationInfo,
    model_validator,
)

from leadpulse.core.engine.rules import CONTACT_ATTRIBUTES, Quadrant, ScoringConfig
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Lifecycle, utc
from leadpulse.core.schedule import Duration
from leadpulse.core.strict import Strict, refuse, show

#: the moment examples are scored as of when neither they nor their section name one
DEFAULT_AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
#: what an example's ``expect.status`` holds when the rules must move the contact nowhere
NO_MOVE = "none"


def _moment(value: Any) -> Any:
    """A moment as YAML reads it (a datetime, a date, or text), in UTC; a moment without a zone is UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise refuse("a moment like 2025-03-01T09:00:00Z", show(value)) from None
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise refuse("a moment like 2025-03-01T09:00:00Z", show(value))


Moment = Annotated[datetime, BeforeValidator(_moment)]

_VALUE = "text, a number, true or false, a date, or a list of them"


def _as_crm_sends_it(value: Any) -> Any:
    """A field or attribute value as a CRM hands it over: dates as ISO text, lists as lists."""
    if isinstance(value, list | tuple):
        return [_as_crm_sends_it(item) for item in value]
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise refuse(_VALUE, show(value))


Value = Annotated[Any, BeforeValidator(_as_crm_sends_it)]


def _two_decimals(points: float) -> float:
    if round(points, 2) != points:
        raise refuse("a number with at most 2 decimals (scores are kept to 2)", show(points))
    return points


#: an expected score, compared at the precision the store keeps
Points = Annotated[float, AfterValidator(_two_decimals)]

_ATTRIBUTES = ("id", "email", "name", "owner_id", "status", "opted_out", "kind", "raw")


class ExampleContact(Strict):
    """A made-up contact: its attributes, its neutral `fields` (every key no attribute takes) and its `raw`
    vendor properties."""

    id: str | None = None
    email: str | None = None
    name: str | None = None
    owner_id: str | None = None
    status: str | None = None
    opted_out: bool = False
    kind: ContactKind = ContactKind.CONTACT
    raw: dict[str, Value] = Field(default_factory=dict)
    #: under a name no file can write, so an error's key path reads as written: ``contact.title``
    fields: dict[str, Value] = Field(default_factory=dict, alias="@fields")

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        # Replaces Strict's check: the neutral fields are written beside the attributes, and whether the tenant
        # reads them is checked against its ``fields`` map (see `check_examples`).
        if not isinstance(data, Mapping):
            return data
        attributes = {key: value for key, value in data.items() if key in _ATTRIBUTES}
        return {**attributes, "@fields": {key: value for key, value in data.items() if key not in _ATTRIBUTES}}

    def build(self, contact_id: str, as_of: datetime) -> Contact:
        """The `Contact` a connector would hand over for this one, last updated at `as_of`."""
        return Contact(self.id or contact_id, self.kind, as_of, self.email, self.name, self.owner_id, self.status,
                       self.opted_out, dict(self.fields), dict(self.raw))


class ExampleActivity(Strict):
    """One activity of an example (or `count` alike ones), `age` before the example's as-of moment or `at` one."""

    kind: ActivityKind = ActivityKind.OTHER
    vendor_type: str | None = Field(None, min_length=1)
    age: Duration | None = None
    at: Moment | None = None
    attributes: dict[str, Value] = Field(default_factory=dict)
    count: int = Field(1, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _names_what_happened(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "kind" not in data and "vendor_type" not in data:
            raise refuse("a kind (page_view, form_submit, ...) or a vendor_type", "neither")
        return data

    @model_validator(mode="after")
    def _one_time(self) -> ExampleActivity:
        if (self.age is None) == (self.at is None):
            raise refuse("exactly one of age (a duration before as_of, like 3d) or at (a moment)",
                         "both" if self.age is not None else "neither")
        return self

    def occurred_at(self, as_of: datetime) -> datetime:
        return self.at if self.at is not None else as_of - (self.age or timedelta(0))


class Expectation(Strict):
    """What an example must get: any of these, at least one."""

    score: Points | None = None
    axes: dict[str, Points] | None = None
    band: str | None = None
    grade: str | None = None
    quadrant: Quadrant | None = None
    status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_status_is_no_move(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "status" in data and data["status"] is None:
            return {**data, "status": NO_MOVE}
        return data

    @model_validator(mode="after")
    def _something_expected(self) -> Expectation:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise refuse(f"at least one of {', '.join(type(self).model_fields)}", "none of them")
        stages = [stage.value for stage in Lifecycle]
        if self.status is not None and self.status not in (NO_MOVE, *stages):
            raise refuse(f"{NO_MOVE} or a lifecycle stage ({', '.join(stages)})", show(self.status), ("status",))
        return self


class Example(Strict):
    """A made-up contact, its activities, and what the tenant's rules must make of it."""

    name: str = Field(min_length=1)
    as_of: Moment | None = None
    contact: ExampleContact = ExampleContact()
    activities: tuple[ExampleActivity, ...] = ()
    expect: Expectation

    def build(self, contact_id: str, as_of: datetime) -> tuple[Contact, list[Activity]]:
        """The contact and its activities as a connector would hand them over, scored at `as_of`."""
        contact = self.contact.build(contact_id, as_of)
        activities = [
            Activity(f"{contact.id}-{n + 1}-{copy + 1}", contact.id, item.kind, item.occurred_at(as_of),
                     item.vendor_type, dict(item.attributes))
            for n, item in enumerate(self.activities) for copy in range(item.count)
        ]
        return contact, activities


class Examples(Strict):
    """The section in its mapping form: one as-of moment for the `cases` that name none."""

    as_of: Moment = DEFAULT_AS_OF
    cases: tuple[Example, ...] = ()

    def moment(self, example: Example) -> datetime:
        """The moment `example` is scored as of."""
        return example.as_of or self.as_of


def _section_shape(value: Any) -> str:
    return "@block" if isinstance(value, Mapping | Examples) else "@list"


_Section = Annotated[
    Annotated[tuple[Example, ...], Tag("@list")] | Annotated[Examples, Tag("@block")],
    Discriminator(_section_shape),
]


def check_examples(section: tuple[Example, ...] | Examples, info: ValidationInfo) -> Examples:
    """The section as `Examples`, once what its examples name is found in the tenant's ``fields`` and
    ``scoring`` (those that loaded: a fault there is reported by itself)."""
    block, prefix = (section, ("cases",)) if isinstance(section, Examples) else (Examples(cases=section), ())
    names: set[str] = set()
    for index, example in enumerate(block.cases):
        at = (*prefix, index)
        if example.name in names:
            raise refuse("a name no other example uses", show(example.name), (*at, "name"))
        names.add(example.name)
        if isinstance(info.data.get("fields"), dict):
            _check_fields(example.contact, info.data["fields"], (*at, "contact"))
        if isinstance(info.data.get("scoring"), ScoringConfig):
            _check_expectation(example.expect, info.data["scoring"], (*at, "expect"))
    return block


def _list_or_mapping(value: Any) -> Any:
    if not isinstance(value, list | tuple | Mapping | Examples):
        raise refuse("a list of examples, or a mapping of as_of and cases", show(value))
    return value


#: the tenant file's ``examples`` section: a list of examples, or the mapping form that sets their as-of moment
ExampleSection = Annotated[
    Examples, GetPydanticSchema(lambda _, handler: handler(_Section)), BeforeValidator(_list_or_mapping),
    AfterValidator(check_examples),
]


def _check_fields(contact: ExampleContact, fields: Mapping[str, str], at: tuple[str | int, ...]) -> None:
    for name in contact.fields:
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            attributes = ", ".join(sorted(CONTACT_ATTRIBUTES))
            raise refuse(f"a name from fields ({known}), a contact attribute ({attributes}) or raw",
                         show(name), (*at, name))


def _check_expectation(expect: Expectation, scoring: ScoringConfig, at: tuple[str | int, ...]) -> None:
    bands = [step.name for step in scoring.bands]
    if expect.band is not None and expect.band not in bands:
        raise refuse(f"one of the bands {', '.join(bands)}", show(expect.band), (*at, "band"))
    grades = [step.name for step in scoring.grades or ()]
    if expect.grade is not None and expect.grade not in grades:
        wanted = f"one of the grades {', '.join(grades)}" if grades else "a scoring.grades section to grade by"
        raise refuse(wanted, show(expect.grade), (*at, "grade"))
    for axis in expect.axes or {}:
        if axis not in scoring.axes:
            raise refuse(f"one of the axes {', '.join(scoring.axes)}", show(axis), (*at, "axes", axis))
    if expect.status is not None and expect.status != NO_MOVE:
        if scoring.lifecycle is None:
            raise refuse("a scoring.lifecycle section to move a status by", show(expect.status), (*at, "status"))
        stages = [stage.value for stage in scoring.lifecycle.values]
        if expect.status not in stages:
            raise refuse(f"{NO_MOVE} or a stage mapped under scoring.lifecycle.values ({', '.join(stages)})",
                         show(expect.status), (*at, "status"))
