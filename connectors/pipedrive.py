"""Pipedrive behind the connector contract, on API v2 through pipedrive-python-lib (see `pipedrive_api`).

Reads: streams that are each one v2 list in update-time order, 500 records a page, from the last run's reach less
the look-back (``updated_since``) up to the run's start (``updated_until``, which excludes it), paged by Pipedrive's
cursor, and one of the persons gone; a page's cursor carries its read's position and window, so a stopped run
resumes the same read.

- ``persons``: the tenant's ``fields:`` name person fields by their display names; they are looked up once a run
  (``personFields``), and custom ones read from ``custom_fields`` by their 40-character keys. A name the person
  fields lack is read from the person's organization (``organizationFields``); ``Organization.<name>`` reads it
  there whatever the person has, and the standard person field ``Organization`` reads the organization's name. A
  person is opted out when their ``marketing_status`` (asked for with ``include_fields``) is unsubscribed. The
  organizations of a page are read together (``organizations?ids=``, 100 a call), once a run each. The person field
  named by ``crm.connection.status_field`` (by default the tenant's ``writeback.status_property``) gives the
  status.
- ``organizations``, for a tenant that reads organization fields: a person's update time does not move when its
  organization changes, so the persons of each organization changed since the last run are read again (one persons
  list an organization, ``org_id``) with its new values. A first read makes no call: every person is read anyway.
- ``activities``: one `Activity` per participant person, the primary one and the others alike (a meeting engages
  everyone in it; ``primary`` among its attributes tells them apart), of the kind the company's activity type maps
  to (its ``key_string``, else its icon: call -> call, meeting and lunch -> meeting, email -> email_sent, task and
  deadline -> task, else other), the type's key kept as `Activity.vendor_type`. An activity happens at its due
  date and time (Pipedrive keeps them in UTC).
- ``deals``: won and lost deals with a person: a won one is the person's `Outcome` (converted when it was won) and a
  ``deal_won`` activity, a lost one a ``deal_lost`` activity. A lost deal sets no outcome: a person has one outcome,
  and one lost deal must not undo another one won.

- ``gone_persons``: v2 lists leave deleted persons out, and merged ones too (the one merged away is deleted, its
  activities and deals move to the survivor, where the activities stream reads them again), so the persons a run
  must stop scoring come from v1 recents (``items=person``), which lists every person changed since the last run's
  reach less the look-back with ``active_flag: false`` on those deleted: each is handed over as gone. A first read
  makes no call (no person is known yet). Recents reach back 30 days: after a longer pause a person deleted before
  that is found when a write to them is refused with 404, which `write_properties` reports as permanent.

Writes: one ``PATCH /api/v2/persons/{id}`` per person, its ``custom_fields`` by key (numbers as numbers, single
options as option ids, text cut to the field's length). `ensure_properties` creates the person fields leadpulse owns
(``POST /api/v2/personFields``: number -> double, text -> varchar, options -> single option) and adds the options
the rules now use to those that lack them; the status field, if missing, is created with the first stage written
(the tenant's file, not the field, orders the stages: `status_order` says nothing), and gains each stage as it is
first written. A field or options POST whose answer is lost is looked for in the fields before it is sent again: a
second field of one name would stop every later run. Follow-ups are activities of the tenant's ``activity_type`` for
the person's owner, the person its primary participant, with the task's token in its note, found again by listing
each person's activities.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipedrive import exceptions

from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import chunked, dump_cursor, load_cursor
from leadpulse.connectors.pipedrive_api import PipedriveApi, TokenCost, classify
from leadpulse.connectors.retry import refusal
from leadpulse.connectors.settings import PipedriveSettings
from leadpulse.core.contract import (
    Connector,
    ConnectorContext,
    GoneContact,
    Page,
    PropertySpec,
    PropertyWrite,
    PushCapacity,
    SkippedRecord,
    TaskRequest,
    WriteResult,
    one_call_each,
)
from leadpulse.core.errors import ConnectorError, OutcomeUnknown, SchemaError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome

log = logging.getLogger("leadpulse.pipedrive")

PAGE_SIZE = 500
#: ids a v2 list takes in ``ids``, and custom field keys in ``custom_fields``
IDS_PER_CALL = 100
CUSTOM_FIELDS_PER_CALL = 15
ORGANIZATION = "Organization."
#: a person's marketing status (Campaigns) when they unsubscribed from marketing email: `Contact.opted_out`
UNSUBSCRIBED = "unsubscribed"
#: the standard person field holding the person's organization: read as the organization's name
ORG_FIELD = "org_id"
TOKEN = re.compile(r"lpk[0-9a-f]{24}")
#: a person's standard values kept in `Contact.raw` besides the mapped fields: all but the volatile update time
#: (every write moves it, leadpulse's own included) and the custom fields, which are kept by their names
UNKEPT = frozenset({"update_time", "custom_fields"})
TEXT_LIMITS = {"varchar": 255, "varchar_auto": 255, "phone": 255, "text": 65_535}
OPTION_TYPES = frozenset({"enum", "set"})
#: the field type leadpulse creates for each `PropertySpec.type` without options
FIELD_TYPES = {"number": "double", "string": "varchar"}
#: an activity type's key or icon -> kind (a company's own types are known by the icon they were given)
KINDS = {
    "call": ActivityKind.CALL, "smartphone": ActivityKind.CALL,
    "meeting": ActivityKind.MEETING, "lunch": ActivityKind.MEETING, "presentation": ActivityKind.MEETING,
    "email": ActivityKind.EMAIL_SENT,
    "task": ActivityKind.TASK, "deadline": ActivityKind.TASK, "checkbox": ActivityKind.TASK,
}
ACTIVITY_ATTRIBUTES = ("subject", "type", "done", "due_date", "due_time", "duration", "marked_as_done_time", "busy",
                       "owner_id", "deal_id", "org_id", "note")
DEAL_ATTRIBUTES = ("title", "status", "value", "currency", "pipeline_id", "stage_id", "owner_id", "lost_reason",
                   "won_time", "lost_time")
#: how far the run's start may be before Pipedrive's clock at the run's first answer (the ``Date`` header counts
#: whole seconds) for the activities read to hold every task made before the run
CLOCK_SLACK = timedelta(seconds=1)
#: how often a field or its options are POSTed when each answer is lost and the fields do not show what it made
SCHEMA_ATTEMPTS = 3
SCHEMA_ADVICE = ("nothing is written until Pipedrive takes it: fix what it names (Settings > Data fields, or the "
                 "tenant file), then run again")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One v2 list read as a stream, in update-time order."""

    name: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)


STREAMS = {spec.name: spec for spec in (
    StreamSpec("persons", "persons"),
    StreamSpec("organizations", "organizations"),
    StreamSpec("activities", "activities"),
    StreamSpec("deals", "deals", {"status": "won,lost"}),
)}
#: the stream of organizations changed since the last run, whose persons are read again (only for a tenant that
#: reads organization fields)
ORGS = "organizations"
#: the stream of persons deleted or merged away, read from v1 recents
GONE = "gone_persons"
GONE_REASON = "deleted in Pipedrive, or merged into another person"
#: how far back Pipedrive's recents reach
RECENTS_DAYS = 30


@dataclass(frozen=True, slots=True)
class FieldDef:
    """A person or organization field as the v2 field endpoints give it: its key (`code`), its display name, its
    type, and its options (id -> label)."""

    code: str
    name: str
    type: str
    custom: bool
    options: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, described: Mapping[str, Any]) -> FieldDef:
        options = {int(o["id"]): str(o["label"]) for o in described.get("options") or []}
        return cls(str(described["field_code"]), str(described["field_name"]), str(described["field_type"]),
                   bool(described.get("is_custom_field")), options)

    def read(self, value: Any) -> Any:
        """A v2 value as rules read it: options by label, objects (money, address, ranges) by their value."""
        if self.type == "enum":
            return self.options.get(value, value) if isinstance(value, int) else value
        if self.type == "set" and isinstance(value, list):
            return [self.options.get(v, v) for v in value]
        return _plain(value)

    def option_id(self, label: str) -> int | None:
        return next((i for i, known in self.options.items() if known == label), None)


@dataclass(frozen=True, slots=True)
class Source:
    """Where one name of the tenant's ``fields:`` is read: a person field, or a field of the person's organization."""

    field: FieldDef
    on_organization: bool


class _Unwritable(Exception):
    """A value that cannot be sent: the reason is the write's."""


def rfc3339(moment: datetime) -> str:
    """A moment as v2 takes it (whole seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """A v2 timestamp (RFC 3339) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class PipedriveConnector(Connector):
    name = "pipedrive"
    settings_model = PipedriveSettings
    #: Pipedrive updates one person a call: the core hands batches, each write one PATCH
    write_batch_size = 100
    task_batch_size = 100

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.settings = context.settings_of(PipedriveSettings)
        self.api = PipedriveApi(context, self.settings)
        self._person_fields: dict[str, FieldDef] | None = None
        self._org_fields: dict[str, FieldDef] | None = None
        self._sources: dict[str, Source] | None = None
        #: organizations read this run: id -> record (None: not readable, deleted say)
        self._orgs: dict[int, dict[str, Any] | None] = {}
        self._kinds: dict[str, ActivityKind] | None = None
        #: the tasks' tokens this run's activities read saw in notes, by token -> activity id; None until that read
        #: has run from its stored cursor to its end (see `tasks_seen`)
        self._tokens_read: dict[str, str] = {}
        self._tokens_complete = False

    # -- the budget -----------------------------------------------------------------------------------------

    def tokens_left(self) -> int | None:
        """The company's daily tokens left, as Pipedrive's last answer said; None before any answer."""
        return self.api.tokens_left()

    def push_capacity(self) -> PushCapacity | None:
        """The tokens the day leaves (asked with the cheapest call if no answer said yet), and for an API token the
        POST/PUT calls it leaves: a write is one PATCH, a task one create, and one look-up of its person's activities
        unless the run's activities read already holds what it would find (`tasks_seen`)."""
        if self.api.tokens_left() is None:
            self.api.read("the signed-in user", lambda: self.api.client.users.get_me(), TokenCost.V1_GET)
        left = self.api.tokens_left()
        if left is None:  # Pipedrive said nothing of a budget
            return None
        task_cost = TokenCost.WRITE + (0 if self._tokens_complete else TokenCost.LIST)
        return PushCapacity(max(0, left), write_cost=int(TokenCost.WRITE), task_cost=int(task_cost),
                            budget="Pipedrive's daily token budget", unit="tokens",
                            calls=self.api.writes_left(), calls_budget="the API token's daily POST/PUT calls")

    # -- fields -----------------------------------------------------------------------------------------------

    def _fields(self, entity: str) -> dict[str, FieldDef]:
        """The entity's fields by key, read once a run (``person`` or ``organization``)."""
        cached = self._person_fields if entity == "person" else self._org_fields
        if cached is not None:
            return cached
        found: dict[str, FieldDef] = {}
        for batch in self.api.pages(f"{entity}Fields", {"limit": PAGE_SIZE}, what=f"the {entity} fields"):
            for described in batch.items:
                made = FieldDef.of(described)
                found[made.code] = made
        if entity == "person":
            self._person_fields = found
        else:
            self._org_fields = found
        return found

    def _named(self, entity: str, name: str) -> FieldDef | None:
        """The entity's field called `name`; two fields of that name are refused, since either could be meant."""
        matches = [f for f in self._fields(entity).values() if f.name == name]
        if len(matches) > 1:
            keys = ", ".join(f.code for f in matches)
            raise ConnectorError(self.context.tenant, f"Pipedrive has {len(matches)} {entity} fields named {name!r} "
                                 f"(keys {keys}): rename all but one in Pipedrive, then run again")
        return matches[0] if matches else None

    def _mapped(self) -> dict[str, Source]:
        """Each neutral field of the tenant's ``fields:`` and where it is read, resolved once a run.

        :raises ConnectorError: naming a field that is neither a person's nor an organization's.
        """
        if self._sources is None:
            self._sources = {neutral: self._source(neutral, name) for neutral, name in self.context.field_map.items()}
        return self._sources

    def _source(self, neutral: str, name: str) -> Source:
        if name.startswith(ORGANIZATION):
            found = self._named("organization", name.removeprefix(ORGANIZATION))
            if found is not None:
                return Source(found, on_organization=True)
        else:
            person = self._named("person", name)
            if person is not None:
                return Source(person, on_organization=False)
            org = self._named("organization", name)
            if org is not None:
                return Source(org, on_organization=True)
        raise ConnectorError(self.context.tenant, f"fields.{neutral} names {name!r}, which is no person field nor "
                             f"organization field of this Pipedrive company: give a field's display name as "
                             f"Pipedrive shows it (or {ORGANIZATION}<name> for the person's organization's)")

    @property
    def _status_name(self) -> str | None:
        return self.settings.status_field or self.context.status_property

    def _status_field(self) -> FieldDef | None:
        name = self._status_name
        return self._named("person", name) if name else None

    # -- pull -------------------------------------------------------------------------------------------------

    def streams(self) -> Sequence[str]:
        return (*(name for name in STREAMS if name != ORGS or self._reads_organizations()), GONE)

    def pull(self, stream: str, cursor: str | None, *, started_at: datetime) -> Iterator[Page]:
        if stream == GONE:
            yield from self._pull_gone(cursor, started_at)
            return
        spec = STREAMS[stream]
        state = load_cursor(cursor)
        if "after" in state:  # a read a stopped run left: the same window, from the page after the last one stored
            low, until, start = state.get("low"), str(state["until"]), state["after"]
        elif stream == ORGS and state.get("since") is None:  # a first read: every person is read anyway
            yield Page(ORGS, dump_cursor({"since": rfc3339(started_at)}))
            return
        else:
            low, until, start = self._since(state.get("since")), rfc3339(started_at), None
        params = {**spec.params, **self._read_params(stream), "sort_by": "update_time", "sort_direction": "asc",
                  "limit": PAGE_SIZE, "updated_until": until, **({"updated_since": low} if low else {})}
        for batch in self.api.pages(spec.path, params, what=f"the {stream} list", start=start):
            following = {"low": low, "until": until, "after": batch.next_token} if batch.next_token else \
                {"since": until}
            yield self._page(stream, batch.items, dump_cursor(following))
        # a read from its stored cursor (not one resumed midway), up to a start no earlier than Pipedrive's clock
        # showed when the run began, has seen every task made before the run
        if stream == "activities" and start is None:
            shown = self.api.first_answered_at
            self._tokens_complete = shown is not None and started_at >= shown - CLOCK_SLACK

    def _pull_gone(self, cursor: str | None, started_at: datetime) -> Iterator[Page]:
        """The persons deleted or merged away since the last run, from v1 recents (see the module's docstring)."""
        state = load_cursor(cursor)
        if "after" in state:  # a read a stopped run left
            low, until, start = str(state["low"]), str(state["until"]), str(state["after"])
        elif state.get("since") is None:  # a first read: no person is known yet, so none can have gone
            yield Page(GONE, dump_cursor({"since": rfc3339(started_at)}))
            return
        else:
            since = parse_time(str(state["since"])) - timedelta(seconds=self.settings.lookback_seconds)
            if since < started_at - timedelta(days=RECENTS_DAYS):
                log.warning("tenant %r: the last read of deleted persons was %s, longer ago than the %d days "
                            "Pipedrive's recents keep; a person deleted before then is found when a write to them "
                            "is refused", self.context.tenant, state["since"], RECENTS_DAYS)
            low, until, start = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), rfc3339(started_at), None
        for batch in self.api.recents("person", low, PAGE_SIZE, start=start):
            gone = [GoneContact(str(row["id"]), GONE_REASON) for row in batch.items
                    if row.get("item") == "person" and isinstance(row.get("data"), dict)
                    and row["data"].get("active_flag") is False]
            following = {"low": low, "until": until, "after": batch.next_token} if batch.next_token else \
                {"since": until}
            yield Page(GONE, dump_cursor(following), gone=gone)

    def _since(self, since: str | None) -> str | None:
        if since is None:
            return None
        return rfc3339(parse_time(since) - timedelta(seconds=self.settings.lookback_seconds))

    def _read_params(self, stream: str) -> dict[str, str]:
        """The custom fields a persons or organizations list asks for (the mapped ones, and a person's status), when
        the API takes them in one call; without them it sends every one."""
        if stream == ORGS:
            wanted = {s.field.code for s in self._mapped().values() if s.on_organization and s.field.custom}
        elif stream == "persons":
            status = self._status_field()
            wanted = {s.field.code for s in self._mapped().values() if s.field.custom and not s.on_organization}
            wanted |= {status.code} if status else set()
        else:
            return {}
        included = {"include_fields": "marketing_status"} if stream == "persons" else {}
        return {**included, **({"custom_fields": ",".join(sorted(wanted))}
                               if 0 < len(wanted) <= CUSTOM_FIELDS_PER_CALL else {})}

    def _page(self, stream: str, records: list[dict[str, Any]], cursor: str) -> Page:
        if stream == ORGS:
            return self._organizations_page(records, cursor)
        status = None
        if stream == "persons":
            status = self._status_field()
            self._read_organizations(records)
        contacts: list[Contact] = []
        activities: list[Activity] = []
        outcomes: list[Outcome] = []
        skipped: list[SkippedRecord] = []
        for record in records:
            try:
                if stream == "persons":
                    contacts.append(self._contact(record, status))
                elif stream == "activities":
                    activities.extend(self._activities(record))
                else:
                    won, closed = _deal(record)
                    outcomes.extend(won)
                    activities.extend(closed)
            except (KeyError, TypeError, ValueError) as exc:
                skipped.append(SkippedRecord(stream, str(record.get("id")),
                                             f"malformed {stream} record: {type(exc).__name__}: {exc}"))
        return Page(stream, cursor, contacts, activities, outcomes, skipped)

    def _organizations_page(self, orgs: list[dict[str, Any]], cursor: str) -> Page:
        """The persons of organizations changed since the last run, read again with their organizations' values
        (a person's update time does not move when its organization changes): one persons list an organization."""
        self._orgs.update({org["id"]: org for org in orgs if isinstance(org.get("id"), int)})
        params = {**self._read_params("persons"), "sort_by": "id", "limit": PAGE_SIZE}
        persons = [person for org in orgs if isinstance(org.get("id"), int)
                   for batch in self.api.pages("persons", {**params, "org_id": org["id"]},
                                               what=f"the persons of organization {org['id']}")
                   for person in batch.items]
        return replace(self._page("persons", persons, cursor), stream=ORGS)

    def _reads_organizations(self) -> bool:
        """Whether a mapped field is read from the persons' organizations."""
        return any(s.on_organization or s.field.code == ORG_FIELD for s in self._mapped().values())

    def _read_organizations(self, persons: list[dict[str, Any]]) -> None:
        """Read the organizations of `persons` not read yet this run, 100 a call, when a mapped field needs them."""
        if not self._reads_organizations():
            return
        wanted = sorted({p["org_id"] for p in persons if isinstance(p.get("org_id"), int)} - set(self._orgs))
        extra = self._read_params(ORGS)
        for ids in chunked(wanted, IDS_PER_CALL):
            answer = self.api.get("organizations", {"ids": ",".join(map(str, ids)), "limit": IDS_PER_CALL, **extra},
                                  what="the organizations of persons")
            found = {org["id"]: org for org in answer.data or [] if isinstance(org, dict)}
            self._orgs.update({org_id: found.get(org_id) for org_id in ids})

    def _contact(self, record: dict[str, Any], status: FieldDef | None) -> Contact:
        owner = record.get("owner_id")
        values = {neutral: self._value(source, record) for neutral, source in self._mapped().items()}
        raw = {key: _plain(value) for key, value in record.items() if key not in UNKEPT}
        raw.update({self.context.field_map[neutral]: value for neutral, value in values.items()})
        emails = _plain(record.get("emails") or [])
        return Contact(
            id=str(record["id"]),
            kind=ContactKind.PERSON,
            updated_at=parse_time(record["update_time"]),
            email=str(emails[0]) if emails else None,
            name=record.get("name") or None,
            owner_id=str(owner) if owner is not None else None,
            status=status.read((record.get("custom_fields") or {}).get(status.code)) if status else None,
            opted_out=record.get("marketing_status") == UNSUBSCRIBED,
            fields=values,
            raw=raw,
            created_at=parse_time(record["add_time"]) if record.get("add_time") else None,
        )

    def _value(self, source: Source, person: Mapping[str, Any]) -> Any:
        record = person
        if source.on_organization or source.field.code == ORG_FIELD:
            org_id = person.get("org_id")
            org = self._orgs.get(org_id) if isinstance(org_id, int) else None
            if org is None:
                return None
            if not source.on_organization:
                return org.get("name")
            record = org
        code = source.field.code
        if source.field.custom:
            return source.field.read((record.get("custom_fields") or {}).get(code))
        # a standard field's key may be singular where the record's is plural: email -> emails
        return source.field.read(record[code] if code in record else record.get(f"{code}s"))

    def _activity_kinds(self) -> dict[str, ActivityKind]:
        """The company's activity types (v1: v2 has none) by key, as kinds."""
        if self._kinds is None:
            answer = self.api.v1("activityTypes", what="the activity types")
            types = [t for t in answer.data or [] if isinstance(t, dict)]
            self._kinds = {str(t["key_string"]): KINDS.get(t["key_string"]) or KINDS.get(t.get("icon_key") or "")
                           or ActivityKind.OTHER for t in types if t.get("key_string")}
        return self._kinds

    def _activities(self, record: dict[str, Any]) -> list[Activity]:
        for token in TOKEN.findall(str(record.get("note") or "")):
            self._tokens_read[token] = str(record["id"])
        kind_of = self._activity_kinds()
        vendor_type = str(record.get("type") or "")
        occurred = _due(record) or parse_time(record.get("marked_as_done_time") or record["add_time"])
        attributes = {name: record[name] for name in ACTIVITY_ATTRIBUTES if record.get(name) not in (None, "")}
        return [
            Activity(id=f"activity-{record['id']}-{person}", contact_id=str(person),
                     kind=kind_of.get(vendor_type, ActivityKind.OTHER), occurred_at=occurred,
                     vendor_type=vendor_type or None, attributes={**attributes, "primary": primary})
            for person, primary in _participants(record).items()
        ]

    def status_order(self) -> Sequence[str] | None:
        return None  # Pipedrive has no lifecycle of its own: the stages are ordered as the tenant's file lists them

    def owners(self) -> Mapping[str, str]:
        answer = self.api.read("the users list", lambda: self.api.client.users.get_all_users(), TokenCost.V1_LIST)
        return {str(u["id"]): str(u.get("name") or u.get("email") or u["id"])
                for u in answer.data or [] if isinstance(u, dict) and "id" in u}

    # -- push -------------------------------------------------------------------------------------------------

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> None:
        self._person_fields = None  # read afresh: someone may have changed them since the pull
        for spec in specs:
            found = self._named("person", spec.name)
            if found is None:
                self._create_field(spec.name, FIELD_TYPES.get(spec.type, "varchar") if not spec.options else "enum",
                                   list(spec.options))
            elif found.type in OPTION_TYPES:
                missing = [o for o in spec.options if found.option_id(o) is None]
                if missing:
                    self._add_options(found, missing)
        if self.settings.activity_type not in self._activity_kinds():
            raise SchemaError(self.context.tenant, f"crm.connection.activity_type is {self.settings.activity_type!r}"
                              f", which is not an activity type of this Pipedrive company (it has "
                              f"{', '.join(sorted(self._activity_kinds()))}): name one of them, or add it in "
                              "Pipedrive (Company settings > Activities)")

    def _create_field(self, name: str, field_type: str, options: list[str]) -> FieldDef:
        body: dict[str, Any] = {"field_name": name, "field_type": field_type}
        if field_type in OPTION_TYPES:
            body["options"] = [{"label": label} for label in options]

        def send() -> FieldDef:
            made = FieldDef.of(self._schema_call(f"creating person field {name!r}", "POST", "personFields", body).data)
            self._fields("person")[made.code] = made
            return made

        return self._once(send, lambda: self._named("person", name))

    def _add_options(self, found: FieldDef, labels: list[str]) -> FieldDef:
        def send() -> FieldDef:
            answer = self._schema_call(f"adding options {labels} to person field {found.name!r}", "POST",
                                       f"personFields/{found.code}/options", [{"label": label} for label in labels])
            added = {int(o["id"]): str(o["label"]) for o in answer.data or []}
            grown = replace(found, options={**found.options, **added})
            self._fields("person")[grown.code] = grown
            return grown

        def made() -> FieldDef | None:
            now = self._fields("person").get(found.code)
            return now if now is not None and all(now.option_id(label) is not None for label in labels) else None

        return self._once(send, made)

    def _once(self, send: Callable[[], FieldDef], made: Callable[[], FieldDef | None]) -> FieldDef:
        """A field or its options made by one POST, never two: a POST whose answer was lost (a dropped connection, a
        5xx) is looked for in the fields read afresh, and sent again only if Pipedrive does not have what it made;
        a blind retry would make a second field of the name, which every later run refuses, or a second option."""
        for _ in range(SCHEMA_ATTEMPTS - 1):
            try:
                return send()
            except OutcomeUnknown as exc:
                log.warning("%s: reading the person fields to see whether Pipedrive made it", exc)
                self._person_fields = None
                settled = made()
                if settled is not None:
                    return settled
        return send()

    def _schema_call(self, what: str, method: str, path: str, body: Any) -> Any:
        try:
            return self.api.send(method, path, body, idempotent=False)
        except exceptions.BaseError as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            raise SchemaError(self.context.tenant, f"Pipedrive refused {what}: {reason}; {SCHEMA_ADVICE}") from exc

    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        return one_call_each(writes, self._write)

    def _write(self, write: PropertyWrite) -> WriteResult:
        try:
            custom = {found.code: self._wire(found, value) for found, value in self._targets(write.values)}
            person = int(write.contact_id)
        except (_Unwritable, SchemaError, ValueError) as exc:
            return WriteResult(write.key, ok=False, error=f"person {write.contact_id}: {exc}")
        try:
            self.api.send("PATCH", f"persons/{person}", {"custom_fields": custom})
        except exceptions.BaseError as exc:
            failure = classify(exc)
            return WriteResult(write.key, ok=False, error=f"person {person}: {failure.message}",
                               permanent=failure.status in (404, 410))  # deleted, or merged into another
        return WriteResult(write.key, ok=True, remote_id=write.contact_id)

    def _targets(self, values: Mapping[str, Any]) -> Iterator[tuple[FieldDef, Any]]:
        """Each value's person field; the status field is created when first written to."""
        for name, value in values.items():
            found = self._named("person", name)
            if found is None and name == self._status_name and value is not None:
                found = self._create_field(name, "enum", [str(value)])
            if found is None:
                raise _Unwritable(f"Pipedrive has no person field {name!r}; it is created before writes when the "
                                  "tenant file's writeback names it")
            yield found, value

    def _wire(self, found: FieldDef, value: Any) -> Any:
        """A value as v2 takes it for the field's type."""
        if value is None:
            return None
        if found.type in OPTION_TYPES:
            option = found.option_id(str(value))
            if option is None:  # a stage first written now, or an option someone deleted
                option = self._add_options(found, [str(value)]).option_id(str(value))
            return option if found.type == "enum" else [option]
        if found.type in ("double", "monetary") and not isinstance(value, int | float):
            raise _Unwritable(f"{found.name!r} takes numbers, not {value!r}")
        if found.type in TEXT_LIMITS:
            text = str(value)
            limit = TEXT_LIMITS[found.type]
            return text if len(text) <= limit else text[:limit - 1] + "…"
        return value

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        return one_call_each(tasks, self._create_task)

    def _create_task(self, task: TaskRequest) -> WriteResult:
        body: dict[str, Any] = {
            "subject": task.subject,
            "type": self.settings.activity_type,
            "due_date": task.due_at.astimezone(UTC).date().isoformat(),
            "due_time": task.due_at.astimezone(UTC).strftime("%H:%M"),
            "done": False,
            "note": f"{task.body}\n\nleadpulse: {task_token(task.key)}",
            "participants": [{"person_id": int(task.contact_id), "primary": True}],
        }
        if task.owner_id and task.owner_id.isdigit():
            body["owner_id"] = int(task.owner_id)
        try:
            answer = self.api.send("POST", "activities", body, idempotent=False)
        except OutcomeUnknown as exc:  # a 5xx or a lost answer: looked up before anything is sent again
            return WriteResult(task.key, ok=False, error=str(exc), outcome_unknown=True)
        except exceptions.BaseError as exc:
            failure = classify(exc)
            return WriteResult(task.key, ok=False, error=f"person {task.contact_id}: {failure.message}",
                               permanent=failure.status in (404, 410))
        made = answer.data.get("id") if isinstance(answer.data, dict) else None
        if made is None:
            return WriteResult(task.key, ok=False, outcome_unknown=True,
                               error="Pipedrive's answer did not name the activity; it is looked up by its key before "
                                     "it is sent again")
        return WriteResult(task.key, ok=True, remote_id=str(made))

    def tasks_seen(self, tasks: Sequence[TaskRequest]) -> dict[str, str] | None:
        """The tasks whose tokens this run's activities read saw in a note, once that read ran whole from the
        stored cursor to the run's start: every activity leadpulse made before the run is in it (see
        `Connector.tasks_seen`). Not when the run's start is behind Pipedrive's clock (a clock set back, or a
        test's): activities made between the two would be missed."""
        if not self._tokens_complete:
            return None
        found = {task.key: self._tokens_read.get(task_token(task.key)) for task in tasks}
        return {key: activity for key, activity in found.items() if activity is not None}

    def find_tasks(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        """The activities holding these tasks' tokens in their notes: one activities list a person (those whose
        primary participant the person is, as leadpulse makes them), done or not."""
        wanted: dict[str, dict[str, str]] = {}
        for task in tasks:
            wanted.setdefault(task.contact_id, {})[task_token(task.key)] = task.key
        found: dict[str, str] = {}
        for person, tokens in wanted.items():
            for batch in self.api.pages("activities", {"person_id": person, "limit": PAGE_SIZE},
                                        what=f"the activities of person {person}"):
                for row in batch.items:
                    for token in TOKEN.findall(str(row.get("note") or "")):
                        if token in tokens:
                            found[tokens[token]] = str(row["id"])
        return found


def _plain(value: Any) -> Any:
    """A value as rules read it: an object (money, an address, a range) by its value; emails and phones as their
    values, the primary one first."""
    if isinstance(value, dict):
        return value.get("value")
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [v.get("value") for v in sorted(value, key=lambda v: not v.get("primary"))]
    return value


def _due(record: Mapping[str, Any]) -> datetime | None:
    """When an activity happens: its due date and time (UTC; midnight when it has no time), or None without a date."""
    day = record.get("due_date")
    if not day:
        return None
    clock = str(record.get("due_time") or "00:00")
    return datetime.fromisoformat(f"{day}T{clock if clock.count(':') == 2 else clock + ':00'}+00:00")


def _participants(record: Mapping[str, Any]) -> dict[int, bool]:
    """Person id -> whether primary, for each person in the activity (the primary participant when none is listed)."""
    found: dict[int, bool] = {}
    for participant in record.get("participants") or []:
        person = participant.get("person_id") if isinstance(participant, dict) else None
        if isinstance(person, int):
            primary = participant.get("primary", participant.get("primary_flag"))
            found[person] = found.get(person, False) or bool(primary)
    person = record.get("person_id")
    if not found and isinstance(person, int):
        found[person] = True
    return found


def _deal(record: Mapping[str, Any]) -> tuple[list[Outcome], list[Activity]]:
    """A won deal's outcome and activity, a lost deal's activity, for its person (none without one)."""
    person, status = record.get("person_id"), record.get("status")
    if not isinstance(person, int) or status not in ("won", "lost") or record.get("is_deleted"):
        return [], []
    when = parse_time(record.get(f"{status}_time") or record.get("close_time") or record["update_time"])
    kind = ActivityKind.DEAL_WON if status == "won" else ActivityKind.DEAL_LOST
    attributes = {name: record[name] for name in DEAL_ATTRIBUTES if record.get(name) not in (None, "")}
    activity = Activity(id=f"deal-{record['id']}", contact_id=str(person), kind=kind, occurred_at=when,
                        vendor_type=f"deal/{status}", attributes=attributes)
    outcomes = [Outcome(str(person), converted=True, converted_at=when)] if status == "won" else []
    return outcomes, [activity]
