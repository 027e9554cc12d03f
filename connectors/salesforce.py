"""Salesforce behind the connector contract, through simple-salesforce.

Login is OAuth at the org's token endpoint (`SalesforceSettings.token_url`) through simple-salesforce's
`token_login`: the password grant through the tenant's connected app, or client credentials. The session then
goes to a `simple_salesforce.Salesforce`; an ``INVALID_SESSION_ID`` mid-run logs in again once, then stops the
tenant.

Reads: one SOQL query per object, paged by ``nextRecordsUrl``, in keyset order ``SystemModstamp, Id`` up to the
run's start, so a page edge inside a run of equal stamps neither loses nor repeats a row. Each page's cursor is the
last row's (stamp, id); the next run starts from the stamp the last one reached, less the look-back. Task and Event
are read with ``queryAll`` (``IsDeleted = false``): ``query`` leaves out the activities Salesforce archived after a
year. Leads and Contacts are read with ``queryAll`` too, so a deleted one is seen; it, and a converted Lead (read-only
in Salesforce, its person now the Contact it names), is handed over as gone: its outcome is kept, and it is never
scored or written again. A Contact's firmographics come from its Account through relationship fields in the same
query.

Writes: sObject Collections (simple-salesforce has no helper for them; they go through its `restful` call on its own
session), 200 records a call with ``allOrNone: false``, per-record errors handed back. A task carries its idempotency
token at the end of its subject, where SOQL can find it (a long text area such as the description cannot be
filtered).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.login import token_login

from leadpulse.connectors.budget import RateBudget
from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import chunked, dump_cursor, load_cursor
from leadpulse.connectors.retry import ApiCaller, Failure, FailureKind, refusal
from leadpulse.connectors.settings import SalesforceAuth, SalesforcePeople, SalesforceSettings
from leadpulse.core.contract import (
    Connector,
    ConnectorContext,
    GoneContact,
    Page,
    PropertySpec,
    PropertyWrite,
    SkippedRecord,
    TaskPriority,
    TaskRequest,
    WriteResult,
)
from leadpulse.core.errors import AuthError, ConnectorError, OutcomeUnknown, SchemaError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome

T = TypeVar("T")
log = logging.getLogger("leadpulse.salesforce")

#: records a collections call takes (Salesforce's own limit)
COLLECTION_SIZE = 200
#: task tokens one look-up query matches: 200 subject filters keep its URL near 10 KB, under the 16 KB Salesforce takes
TOKENS_PER_LOOKUP = 200
SUBJECT_LENGTH = 255
PRIORITIES = {TaskPriority.LOW: "Low", TaskPriority.MEDIUM: "Normal", TaskPriority.HIGH: "High"}
#: what to do about a request Salesforce refuses as sent (a 4xx other than auth and limits)
REFUSED_ADVICE = ("retrying will not help; check the fields map and crm.connection in the tenant file against the "
                  "org's objects, then run again")

#: what each person object is read with, besides the tenant's mapped fields
PERSON_FIELDS = {
    SalesforcePeople.LEAD: ("Id", "FirstName", "LastName", "Email", "OwnerId", "Status", "HasOptedOutOfEmail",
                            "IsConverted", "ConvertedDate", "ConvertedContactId", "IsDeleted", "SystemModstamp"),
    SalesforcePeople.CONTACT: ("Id", "FirstName", "LastName", "Email", "OwnerId", "HasOptedOutOfEmail",
                               "AccountId", "IsDeleted", "SystemModstamp"),
}
#: neutral field -> field, for each person object, when the tenant's fields map does not say
DEFAULT_FIELDS = {
    SalesforcePeople.LEAD: {"title": "Title", "company": "Company", "industry": "Industry",
                            "employees": "NumberOfEmployees", "revenue": "AnnualRevenue", "country": "Country",
                            "source": "LeadSource"},
    SalesforcePeople.CONTACT: {"title": "Title", "company": "Account.Name", "industry": "Account.Industry",
                               "employees": "Account.NumberOfEmployees", "revenue": "Account.AnnualRevenue",
                               "country": "MailingCountry", "source": "LeadSource"},
}
#: a Lead's fields the tenant's map may name that a Contact reads from its Account
ACCOUNT_FIELDS = {"Company": "Account.Name", "Industry": "Account.Industry",
                  "NumberOfEmployees": "Account.NumberOfEmployees", "AnnualRevenue": "Account.AnnualRevenue",
                  "Country": "MailingCountry"}
TASK_FIELDS = ("Id", "WhoId", "Subject", "TaskSubtype", "Type", "Status", "Description", "CallType",
               "CallDisposition", "CallDurationInSeconds", "CreatedDate", "OwnerId", "SystemModstamp")
EVENT_FIELDS = ("Id", "WhoId", "Subject", "Type", "StartDateTime", "DurationInMinutes", "OwnerId", "SystemModstamp")
MEMBER_FIELDS = ("Id", "LeadId", "ContactId", "CampaignId", "Campaign.Name", "Campaign.Type", "Status",
                 "HasResponded", "FirstRespondedDate", "CreatedDate", "SystemModstamp")
#: a responding campaign member's activity, by the campaign's type
CAMPAIGN_KINDS = {"Webinar": ActivityKind.WEBINAR, "Web": ActivityKind.FORM_SUBMIT,
                  "Content": ActivityKind.FORM_SUBMIT, "Email": ActivityKind.EMAIL_CLICK}


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One object read as a stream."""

    name: str
    sobject: str
    fields: tuple[str, ...]
    #: read through queryAll: activities so those Salesforce archived are read too (deleted ones left out), people
    #: so a deleted one is seen, and stops being scored
    query_all: bool = False

    @property
    def people(self) -> bool:
        return self.sobject in ("Lead", "Contact")


def soql_datetime(moment: datetime) -> str:
    """A datetime as a SOQL literal (SOQL takes ``Z`` or ``+hh:mm``, not the ``+0000`` Salesforce prints)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> datetime:
    """Salesforce's ``2021-05-27T13:59:29.000+0000`` (or a date) as an aware UTC datetime."""
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _errors(body: Any) -> list[dict[str, Any]]:
    """Salesforce's error array (``[{message, errorCode, fields?}]``) from an exception's content, else []."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []


def classify(exc: Exception) -> Failure:
    """Sort a simple-salesforce or transport failure into retry, stop-the-tenant, or the request's own fault."""
    if isinstance(exc, SalesforceAuthenticationFailed):
        return Failure(FailureKind.AUTH, 400, f"Salesforce refused the login ({exc.code}: {exc.message}); check "
                       "crm.connection.username and client_id, and the crm.secrets the tenant file names (password "
                       "and security_token, or client_secret)")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        json.JSONDecodeError)):
        return Failure(FailureKind.RETRY, 0, f"no complete answer from Salesforce ({type(exc).__name__})")
    if not isinstance(exc, SalesforceError):
        return Failure(FailureKind.RECORD, -1, f"{type(exc).__name__}: {exc}")
    status, errors = exc.status, _errors(exc.content)
    code = errors[0].get("errorCode", "") if errors else ""
    what = f"Salesforce answered {status} {code}".rstrip()
    message = errors[0].get("message", "") if errors else ""
    if status == 401:
        return Failure(FailureKind.AUTH, status, f"{what}: the session was refused; check the tenant's login "
                       "settings and secrets")
    if code == "REQUEST_LIMIT_EXCEEDED":
        return Failure(FailureKind.QUOTA, status, f"{what}: the org's 24-hour API allowance is spent; the next run "
                       "resumes from the checkpoint once calls older than a day stop counting")
    if status == 403:
        return Failure(FailureKind.AUTH, status, f"{what}: {message}; the integration user lacks a permission")
    if status in (408, 429) or status >= 500:
        return Failure(FailureKind.RETRY, status, f"{what}: {message}".rstrip(": "))
    return Failure(FailureKind.RECORD, status, f"{what}: {message}".rstrip(": "))


class SalesforceConnector(Connector):
    name = "salesforce"
    settings_model = SalesforceSettings
    write_batch_size = COLLECTION_SIZE
    task_batch_size = COLLECTION_SIZE

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.settings = settings = context.settings_of(SalesforceSettings)
        self._session = requests.Session()
        if settings.ca_bundle:
            # requests lets REQUESTS_CA_BUNDLE override a session's own bundle unless the session ignores the
            # environment; the proxies the environment names are kept, read once here
            self._session.verify = str(settings.ca_bundle)
            self._session.proxies.update(requests.utils.get_environ_proxies(settings.token_url()))
            self._session.trust_env = False
        self._timeout = (min(5.0, settings.timeout_seconds), settings.timeout_seconds)
        # The org's allowance is a 24-hour one, which the tenant's daily_limit and the org's answers watch; there is
        # no short window to pace.
        self.caller = ApiCaller(context.tenant, classify, RateBudget([], clock=context.clock), context.stats,
                                allowance=context.call_allowance)
        self._relogged = False
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self._unwritable: set[str] = set()
        self._sf = self._login()
        #: neutral field -> the field each person object reads it from
        self._neutral = {people: self._fields_of(people) for people in settings.objects}
        self._specs = self._stream_specs()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _login(self) -> Salesforce:
        settings, secrets = self.settings, self.context.secrets
        if settings.auth is SalesforceAuth.CLIENT_CREDENTIALS:
            form = {"grant_type": "client_credentials", "client_id": settings.client_id,
                    "client_secret": secrets["client_secret"]}
        elif settings.auth is SalesforceAuth.PASSWORD and settings.client_id:
            form = {"grant_type": "password", "client_id": settings.client_id,
                    "client_secret": secrets["client_secret"], "username": settings.username,
                    "password": secrets["password"] + secrets.get("security_token", "")}
        else:
            raise ConnectorError(self.context.tenant, f"crm.connection.auth {settings.auth.value} "
                                 f"{'without a client_id ' if settings.auth is SalesforceAuth.PASSWORD else ''}"
                                 "is not supported by this version; name the connected app's client_id (OAuth "
                                 "password or client_credentials)")

        def send() -> tuple[str, str]:
            token, instance = token_login(settings.token_url(), form, settings.domain or "login",
                                          settings.client_id or "", None, None, self._session)
            return str(token), str(instance)

        token, instance = self.caller.call(send, scope="login")
        return Salesforce(session_id=token, instance=instance, session=self._session, version=settings.api_version)

    def _call(self, fn: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """One API call through retries; an expired session logs in again once in the run."""
        try:
            return self.caller.call(lambda: fn(self._sf), idempotent=idempotent)
        except AuthError as exc:
            expired = "INVALID_SESSION_ID" in str(exc)
            if not expired or self._relogged:
                raise
            log.info("tenant %r: the Salesforce session expired; logging in again", self.context.tenant)
            self._relogged = True
            self._sf = self._login()
            return self.caller.call(lambda: fn(self._sf), idempotent=idempotent)

    def _json(self, what: str, fn: Callable[[Salesforce], T]) -> T:
        """A call whose refusal is no one record's fault (a query, a describe): it ends the run, saying what."""
        try:
            return self._call(fn)
        except SalesforceError as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            raise ConnectorError(self.context.tenant, f"Salesforce refused {what}: {reason}; {REFUSED_ADVICE}"
                                 ) from exc

    def _describe(self, sobject: str) -> dict[str, Any]:
        described = self._json(f"the {sobject} describe", lambda sf: sf.restful(
            f"sobjects/{sobject}/describe", timeout=self._timeout))
        return dict(described or {})

    def _query(self, what: str, soql: str, *, query_all: bool = False) -> Iterator[list[dict[str, Any]]]:
        """The pages of one SOQL query (``queryAll`` with `query_all`), following ``nextRecordsUrl``."""

        def first(sf: Salesforce) -> Any:
            return sf.query(soql, include_deleted=query_all, timeout=self._timeout)

        def more(url: str) -> Callable[[Salesforce], Any]:
            return lambda sf: sf.query_more(url, identifier_is_url=True, include_deleted=query_all,
                                            timeout=self._timeout)

        data = self._json(what, first)
        while True:
            yield list(data.get("records", []))
            following = data.get("nextRecordsUrl")
            if data.get("done", True) or not following:
                return
            data = self._json(what, more(following))

    # -- pull -----------------------------------------------------------------------------------------------

    def _stream_specs(self) -> dict[str, StreamSpec]:
        specs = {}
        for people in self.settings.objects:
            specs[people.value.lower() + "s"] = StreamSpec(people.value.lower() + "s", people.value,
                                                           self._person_fields(people), query_all=True)
        specs["tasks"] = StreamSpec("tasks", "Task", TASK_FIELDS, query_all=True)
        specs["events"] = StreamSpec("events", "Event", EVENT_FIELDS, query_all=True)
        specs["campaign_members"] = StreamSpec("campaign_members", "CampaignMember", MEMBER_FIELDS)
        return specs

    def _fields_of(self, people: SalesforcePeople) -> dict[str, str]:
        """Neutral field -> the field this object reads it from: the tenant's map, Lead names followed to the
        Account for Contacts."""
        mapped = dict(self.context.field_map)
        if people is SalesforcePeople.CONTACT:
            mapped = {neutral: ACCOUNT_FIELDS.get(name, name) for neutral, name in mapped.items()}
        return {**DEFAULT_FIELDS[people], **mapped}

    def _person_fields(self, people: SalesforcePeople) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*PERSON_FIELDS[people], *self._neutral[people].values()]))

    def streams(self) -> Sequence[str]:
        return tuple(self._specs)

    def pull(self, stream: str, cursor: str | None, *, started_at: datetime) -> Iterator[Page]:
        spec = self._specs[stream]
        state = load_cursor(cursor)
        until = state.get("until") or soql_datetime(started_at)
        where = [f"SystemModstamp <= {until}"]
        if spec.query_all and not spec.people:
            where.append("IsDeleted = false")
        if "after_id" in state:  # resuming inside a run's read, after the last row stored
            stamp = state["since"]
            where.append(f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > "
                         f"{soql_string(state['after_id'])}))")
        elif "since" in state:  # a new run: from where the last one reached, less the look-back
            low = datetime.fromisoformat(state["since"].replace("Z", "+00:00"))
            where.append(f"SystemModstamp >= {soql_datetime(low - timedelta(seconds=self.settings.lookback_seconds))}")
        soql = (f"SELECT {', '.join(spec.fields)} FROM {spec.sobject} WHERE {' AND '.join(where)} "
                "ORDER BY SystemModstamp, Id")
        last: dict[str, Any] | None = None
        for records in self._query(f"the {spec.sobject} query", soql, query_all=spec.query_all):
            if records:
                last = records[-1]
                stamp = soql_datetime(parse_datetime(last["SystemModstamp"]))
                position = {"since": stamp, "after_id": last["Id"], "until": until}
                yield self._page(spec, records, dump_cursor(position))
        yield Page(spec.name, dump_cursor({"since": until}))

    def _page(self, spec: StreamSpec, records: list[dict[str, Any]], cursor: str) -> Page:
        contacts: list[Contact] = []
        activities: list[Activity] = []
        outcomes: list[Outcome] = []
        skipped: list[SkippedRecord] = []
        gone: list[GoneContact] = []
        for record in records:
            try:
                if spec.people:
                    contact = self._contact(SalesforcePeople(spec.sobject), record)
                    outcomes.append(self._outcome(record, contact))
                    reason = _gone(record)
                    if reason:
                        gone.append(GoneContact(contact.id, reason))
                    else:
                        contacts.append(contact)
                else:
                    activity = self._activity(spec, record)
                    if activity is not None:
                        activities.append(activity)
            except (KeyError, TypeError, ValueError) as exc:
                skipped.append(SkippedRecord(spec.name, str(record.get("Id")) if isinstance(record, dict) else None,
                                             f"malformed {spec.sobject} record: {type(exc).__name__}: {exc}"))
        return Page(spec.name, cursor, contacts, activities, outcomes, skipped, gone)

    def _contact(self, people: SalesforcePeople, record: dict[str, Any]) -> Contact:
        name = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p) or None
        return Contact(
            id=str(record["Id"]),
            kind=ContactKind.LEAD if people is SalesforcePeople.LEAD else ContactKind.CONTACT,
            updated_at=parse_datetime(record["SystemModstamp"]),
            email=record.get("Email") or None,
            name=name,
            owner_id=record.get("OwnerId") or None,
            status=record.get("Status") or None,
            opted_out=bool(record.get("HasOptedOutOfEmail")),
            fields={neutral: _value(record, name) for neutral, name in self._neutral[people].items()},
            raw={k: v for k, v in _flat(record).items() if k != "SystemModstamp"},
        )

    @staticmethod
    def _outcome(record: dict[str, Any], contact: Contact) -> Outcome:
        if not record.get("IsConverted"):
            return Outcome(contact.id, converted=False)
        when = record.get("ConvertedDate")
        return Outcome(contact.id, converted=True, converted_at=parse_datetime(when) if when else contact.updated_at)

    def _activity(self, spec: StreamSpec, record: dict[str, Any]) -> Activity | None:
        attributes = {k: v for k, v in _flat(record).items() if v not in (None, "") and k != "SystemModstamp"}
        if spec.sobject == "CampaignMember":
            who = record.get("LeadId") or record.get("ContactId")
            campaign = (record.get("Campaign") or {}).get("Type") or ""
            responded = bool(record.get("HasResponded"))
            kind = CAMPAIGN_KINDS.get(campaign, ActivityKind.OTHER) if responded else ActivityKind.OTHER
            when = record.get("FirstRespondedDate") if responded else None
            occurred = parse_datetime(when or record["CreatedDate"])
            vendor_type = f"CampaignMember/{campaign}" if campaign else "CampaignMember"
        elif spec.sobject == "Event":
            who, kind = record.get("WhoId"), ActivityKind.MEETING
            occurred, vendor_type = parse_datetime(record["StartDateTime"]), "Event"
        else:
            who, kind = record.get("WhoId"), _task_kind(record)
            occurred = parse_datetime(record["CreatedDate"])
            vendor_type = f"Task/{record.get('TaskSubtype') or 'Task'}"
        if not who:
            return None  # logged against no one (an account, an opportunity): nobody to score
        return Activity(id=f"{spec.sobject}-{record['Id']}", contact_id=str(who), kind=kind, occurred_at=occurred,
                        vendor_type=vendor_type, attributes=attributes)

    def status_order(self) -> Sequence[str] | None:
        if SalesforcePeople.LEAD not in self.settings.objects:
            return None
        status = self._fields_described("Lead").get("Status") or {}  # the describe the push checks fields with
        values = [v["value"] for v in status.get("picklistValues", []) if v.get("active", True)]
        return values or None

    def owners(self) -> Mapping[str, str]:
        found: dict[str, str] = {}
        for records in self._query("the User query", "SELECT Id, Name, Email FROM User"):
            for user in records:
                found[str(user["Id"])] = user.get("Name") or user.get("Email") or str(user["Id"])
        return found

    # -- push -----------------------------------------------------------------------------------------------

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> None:
        """Every field leadpulse writes must exist and be updateable on each object it scores: Salesforce makes
        custom fields only through its Metadata API, so the missing ones are named, with what to create."""
        problems = []
        for people in self.settings.objects:
            fields = self._fields_described(people.value)
            for spec in specs:
                found = fields.get(spec.name)
                if found is None:
                    problems.append(f"{people.value}.{spec.name} is missing: create it as {_field_type(spec)}")
                elif not found.get("updateable"):
                    problems.append(f"{people.value}.{spec.name} is read-only for the integration user: make it "
                                    "editable in its field-level security")
        if problems:
            raise SchemaError(self.context.tenant, "Salesforce lacks fields leadpulse writes: " + "; ".join(problems)
                              + "; nothing is written until they exist (Setup > Object Manager > Fields), then run "
                              "again")

    def _fields_described(self, sobject: str) -> dict[str, dict[str, Any]]:
        """The object's fields by name, described once a run."""
        if sobject not in self._described:
            described = self._describe(sobject)
            self._described[sobject] = {f.get("name"): f for f in described.get("fields", [])}
        return self._described[sobject]

    def _writable(self, sobject: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` without the fields `sobject` lacks: a Contact has no Status unless the org gave it one, and
        the tenant's status write is for its Leads. The missing ones are said once a run."""
        fields = self._fields_described(sobject)
        kept = {name: value for name, value in values.items() if name in fields}
        for name in sorted(set(values) - set(kept) - self._unwritable):
            self._unwritable.add(name)
            log.warning("tenant %r: %s has no field %s; it is written on the other objects only",
                        self.context.tenant, sobject, name)
        return kept

    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        records = [{"attributes": {"type": _sobject(w.contact_kind)}, "id": w.contact_id,
                    **self._writable(_sobject(w.contact_kind), w.values)} for w in writes]
        answers = self._collections("PATCH", records)
        return [_result(w.key, answer, remote_id=w.contact_id) for w, answer in zip(writes, answers, strict=True)]

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        records = [self._task_record(task) for task in tasks]
        try:
            answers = self._collections("POST", records, idempotent=False)
        except OutcomeUnknown as exc:  # a 5xx or a lost answer: looked up before anything is sent again
            return [WriteResult(t.key, ok=False, error=str(exc), outcome_unknown=True) for t in tasks]
        return [_result(t.key, answer) for t, answer in zip(tasks, answers, strict=True)]

    def _task_record(self, task: TaskRequest) -> dict[str, Any]:
        token = f" [{task_token(task.key)}]"
        record = {
            "attributes": {"type": "Task"},
            "WhoId": task.contact_id,
            "Subject": task.subject[:SUBJECT_LENGTH - len(token)] + token,
            "Description": task.body,
            "ActivityDate": task.due_at.date().isoformat(),
            "Priority": PRIORITIES[task.priority],
            "Status": "Not Started",
        }
        if task.owner_id:
            record["OwnerId"] = task.owner_id
        return record

    def _collections(self, method: str, records: list[dict[str, Any]], *, idempotent: bool = True
                     ) -> list[dict[str, Any]]:
        """One sObject Collections call; its per-record answers in request order."""
        body = {"allOrNone": False, "records": records}
        try:
            answers = self._call(lambda sf: sf.restful("composite/sobjects", method=method, json=body,
                                                       timeout=self._timeout), idempotent=idempotent)
        except SalesforceError as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            return [{"success": False, "errors": [{"statusCode": "REFUSED", "message": reason}]}] * len(records)
        if not isinstance(answers, list) or len(answers) != len(records):
            raise OutcomeUnknown(self.context.tenant, "Salesforce's collections answer did not give one result per "
                                 "record; what it carried out is looked up before anything is sent again")
        return answers

    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        """The tasks whose subjects end with these keys' tokens: one ``queryAll`` per 200 keys (deleted tasks count:
        one a person deleted is not made again)."""
        tokens = {task_token(key): key for key in keys}
        found: dict[str, str] = {}
        for chunk in chunked(list(tokens), TOKENS_PER_LOOKUP):
            matches = " OR ".join(f"Subject LIKE '%[{token}]'" for token in chunk)
            soql = f"SELECT Id, Subject FROM Task WHERE {matches}"
            for records in self._query("the look-up of tasks by key", soql, query_all=True):
                for record in records:
                    subject = record.get("Subject") or ""
                    token = subject[subject.rfind("[") + 1:-1] if subject.endswith("]") else ""
                    if token in tokens:
                        found[tokens[token]] = str(record["Id"])
        return found

    def close(self) -> None:
        self._session.close()


def _gone(record: Mapping[str, Any]) -> str | None:
    """Why Salesforce no longer lets this person be scored or written, or None: a converted Lead is read-only (its
    person lives on as the Contact it points to), a deleted record is in the recycle bin."""
    if record.get("IsDeleted"):
        return "deleted in Salesforce"
    if record.get("IsConverted"):
        into = record.get("ConvertedContactId")
        return f"converted into Contact {into}" if into else "converted"
    return None


def _sobject(kind: ContactKind) -> str:
    return "Lead" if kind is ContactKind.LEAD else "Contact"


def _result(key: str, answer: Mapping[str, Any], remote_id: str | None = None) -> WriteResult:
    if answer.get("success"):
        return WriteResult(key, ok=True, remote_id=str(answer.get("id") or remote_id))
    reasons = "; ".join(f"{e.get('statusCode', 'ERROR')}: {e.get('message', '')}".rstrip(": ")
                        for e in answer.get("errors") or [])
    return WriteResult(key, ok=False, error=reasons or "Salesforce refused it without a reason")


def _task_kind(record: Mapping[str, Any]) -> ActivityKind:
    subtype = record.get("TaskSubtype")
    if subtype == "Call":
        return ActivityKind.CALL
    if subtype == "Email":
        note = str(record.get("Description") or "").lower()
        if "bounced" in note:
            return ActivityKind.EMAIL_BOUNCE
        return ActivityKind.EMAIL_REPLY if note.startswith("reply") else ActivityKind.EMAIL_SENT
    return ActivityKind.TASK


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A record's values by field name, relationship fields as ``Account.Industry``, without ``attributes``."""
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if name == "attributes":
            continue
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _value(record: Mapping[str, Any], name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _field_type(spec: PropertySpec) -> str:
    if spec.type == "number":
        return "Number(16, 2)"
    if spec.options:
        return f"Picklist with values {', '.join(spec.options)}"
    return "Text(255)"
