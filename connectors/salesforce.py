"""Salesforce behind the connector contract, through simple-salesforce.

Login: OAuth at the org's token endpoint (`SalesforceSettings.token_url`) through simple-salesforce's `token_login`
(the password grant through the tenant's connected app, or client credentials), or simple-salesforce's own JWT
bearer and SOAP ``login()`` (password and security token, no connected app; gone from API 65.0). The session goes to
a `simple_salesforce.Salesforce`; an ``INVALID_SESSION_ID`` mid-run logs in again once, then stops the tenant.

Limits: a run reads ``/limits`` first, then every REST answer's ``Sforce-Limit-Info``, and stops as quota exhausted
before the org's 24-hour allowance falls under the tenant's reserve (``api_reserve``), left to its other
integrations.

Reads: one SOQL query per object, paged by ``nextRecordsUrl`` at 2,000 rows, in keyset order ``SystemModstamp, Id``
up to the run's start, so a page edge inside a run of equal stamps neither loses nor repeats a row. Each page's
cursor is the last row's (stamp, id); the next run starts from the stamp the last one reached, less the look-back.
A first read of an object above ``bulk_pull_above`` records is one Bulk API 2.0 query job instead, its cursor the
job and results page (see `salesforce_bulk`). Task and Event are read with ``queryAll`` (``IsDeleted = false``):
``query`` leaves out the activities Salesforce archived after a year. Leads and Contacts are read with ``queryAll``
too, so a deleted one is seen; it, and a converted Lead (read-only in Salesforce, its person now the Contact it
names), is handed over as gone: its outcome is kept, it is never scored or written again, and when the tenant scores
Contacts its history goes on as that Contact's. A Contact's firmographics come from its Account through
relationship fields in the same query; its outcome from the won Opportunities it has a contact role on.

Writes: sObject Collections (simple-salesforce has no helper for them; they go through its `restful` call on its own
session), 200 records a call with ``allOrNone: false``, per-record errors handed back (those no retry can change
marked permanent; row locks sent again at once); above ``bulk_write_above`` records, Bulk API 2.0 ingest jobs. A
task carries its idempotency token at the end of its subject, where SOQL can find it (a long text area such as the
description cannot be filtered), or in the tenant's Task External ID field, by which it is upserted.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.login import SalesforceLogin, token_login

from leadpulse.connectors.budget import RateBudget
from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import chunked, dump_cursor, load_cursor
from leadpulse.connectors.retry import ApiCaller, Failure, FailureKind, refusal
from leadpulse.connectors.salesforce_bulk import BulkJobs, IngestResult, JobNotDone
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
from leadpulse.core.errors import AuthError, ConnectorError, OutcomeUnknown, QuotaExhausted, SchemaError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome

T = TypeVar("T")
log = logging.getLogger("leadpulse.salesforce")

#: records a collections call takes (Salesforce's own limit)
COLLECTION_SIZE = 200
#: tasks one look-up query finds: 200 people (or External IDs) keep its URL near 6 KB, under the 16 KB Salesforce takes
TOKENS_PER_LOOKUP = 200
SUBJECT_LENGTH = 255
#: rows a REST query page holds at most (``Sforce-Query-Options: batchSize``), and rows a stored page holds
QUERY_BATCH = 2000
BATCH_SIZE = {"Sforce-Query-Options": f"batchSize={QUERY_BATCH}"}
#: records one ingest job takes: a CSV of a few MB, well under the 100 MB an upload may be
INGEST_JOB_SIZE = 100_000
#: row-lock refusals are sent again in the same call this many times, after a pause that doubles from one second
LOCK_RETRIES = 2
#: refusals that sending again cannot change: the record is read-only or gone, or the value is not one the field
#: takes; parked at once with the reason
PERMANENT_ERRORS = frozenset({"CANNOT_UPDATE_CONVERTED_LEAD", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY",
                              "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "INVALID_ID_FIELD"})
PRIORITIES = {TaskPriority.LOW: "Low", TaskPriority.MEDIUM: "Normal", TaskPriority.HIGH: "High"}
#: what to do about a request Salesforce refuses as sent (a 4xx other than auth and limits)
REFUSED_ADVICE = ("retrying will not help; check the fields map and crm.connection in the tenant file against the "
                  "org's objects, then run again")

#: what each person object is read with, besides the tenant's mapped fields
PERSON_FIELDS = {
    SalesforcePeople.LEAD: ("Id", "FirstName", "LastName", "Email", "OwnerId", "Status", "HasOptedOutOfEmail",
                            "IsConverted", "ConvertedDate", "ConvertedContactId", "IsDeleted", "CreatedDate",
                            "SystemModstamp"),
    SalesforcePeople.CONTACT: ("Id", "FirstName", "LastName", "Email", "OwnerId", "HasOptedOutOfEmail",
                               "AccountId", "IsDeleted", "CreatedDate", "SystemModstamp"),
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
               "CallDisposition", "CallDurationInSeconds", "CreatedDate", "OwnerId", "IsArchived", "SystemModstamp")
EVENT_FIELDS = ("Id", "WhoId", "Subject", "Type", "StartDateTime", "DurationInMinutes", "OwnerId", "IsArchived",
                "SystemModstamp")
MEMBER_FIELDS = ("Id", "LeadId", "ContactId", "CampaignId", "Campaign.Name", "Campaign.Type", "Status",
                 "HasResponded", "FirstRespondedDate", "CreatedDate", "SystemModstamp")
#: a won Opportunity's contact roles: a Contact's outcome
ROLE_FIELDS = ("Id", "ContactId", "OpportunityId", "Opportunity.CloseDate", "Opportunity.SystemModstamp")
#: standard fields' describe types, so a Bulk CSV cell reads as the REST API's JSON value without a describe
STANDARD_TYPES = {"IsConverted": "boolean", "IsDeleted": "boolean", "HasOptedOutOfEmail": "boolean",
                  "HasResponded": "boolean", "IsArchived": "boolean", "NumberOfEmployees": "int",
                  "AnnualRevenue": "currency", "CallDurationInSeconds": "int", "DurationInMinutes": "int"}
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
    #: the modification stamp the stream is read in order of (a contact role changes with its Opportunity)
    stamp: str = "SystemModstamp"
    #: what else a row must meet
    condition: str | None = None

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


@dataclass
class OrgAllowance:
    """The org's rolling 24-hour API allowance as Salesforce last told it (``/limits`` at the start of a run, then
    every REST answer's ``Sforce-Limit-Info``), and the share of it kept for the org's other integrations."""

    reserve: float
    used: int = 0
    total: int = 0

    def note(self, used: int, total: int) -> None:
        self.used, self.total = used, total

    @property
    def left(self) -> int:
        return self.total - self.used

    def spent(self) -> bool:
        """True when another call would take the org under its reserve."""
        return self.total > 0 and self.left <= self.reserve * self.total


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
        self._org = OrgAllowance(settings.api_reserve)
        self._record_counts: dict[str, int] | None = None
        self._bulk = BulkJobs(self._call, context.clock)
        self._sf = self._login()
        self._bulk_query_jobs = self._read_limits()
        #: neutral field -> the field each person object reads it from
        self._neutral = {people: self._fields_of(people) for people in settings.objects}
        self._specs = self._stream_specs()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _login(self) -> Salesforce:
        """Log in as the tenant's settings say: OAuth at the org's token URL (the password flow through a connected
        app, or client credentials), the JWT bearer grant, or SOAP ``login()`` with password and security token."""
        token, instance = self.caller.call(self._login_call(), scope="login")
        return Salesforce(session_id=token, instance=instance, session=self._session, version=self.settings.api_version)

    def _login_call(self) -> Callable[[], tuple[str, str]]:
        settings, secrets = self.settings, self.context.secrets
        if settings.auth is SalesforceAuth.JWT:
            return lambda: _pair(SalesforceLogin(
                username=settings.username, consumer_key=settings.client_id, privatekey=secrets["private_key"],
                domain=settings.sdk_domain(), session=self._session, sf_version=settings.api_version))
        if settings.auth is SalesforceAuth.PASSWORD and not settings.client_id:
            return lambda: _pair(SalesforceLogin(
                username=settings.username, password=secrets["password"],
                security_token=secrets.get("security_token"), domain=settings.sdk_domain(), session=self._session,
                sf_version=settings.api_version))
        if settings.auth is SalesforceAuth.CLIENT_CREDENTIALS:
            form = {"grant_type": "client_credentials", "client_id": settings.client_id,
                    "client_secret": secrets["client_secret"]}
        else:
            form = {"grant_type": "password", "client_id": settings.client_id,
                    "client_secret": secrets["client_secret"], "username": settings.username,
                    "password": secrets["password"] + secrets.get("security_token", "")}
        return lambda: _pair(token_login(settings.token_url(), form, settings.domain or "login",
                                         settings.client_id or "", None, None, self._session))

    def _call(self, fn: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """One API call through retries, unless it would take the org under its reserve; an expired session logs
        in again once in the run."""
        if self._org.spent():
            raise QuotaExhausted(self.context.tenant, f"the org has {self._org.left} of its {self._org.total} API "
                                 f"calls of the last 24 hours left, and leadpulse leaves the last "
                                 f"{self.settings.api_reserve:.0%} to its other integrations (crm.connection."
                                 "api_reserve); everything stored is kept, and a later run resumes from the "
                                 "checkpoint as older calls stop counting")
        try:
            result = self.caller.call(lambda: fn(self._sf), idempotent=idempotent)
        except AuthError as exc:
            expired = "INVALID_SESSION_ID" in str(exc)
            if not expired or self._relogged:
                raise
            log.info("tenant %r: the Salesforce session expired; logging in again", self.context.tenant)
            self._relogged = True
            self._sf = self._login()
            result = self.caller.call(lambda: fn(self._sf), idempotent=idempotent)
        usage = self._sf.api_usage.get("api-usage")
        if usage is not None:
            self._org.note(usage.used, usage.total)
        return result

    def _read_limits(self) -> int:
        """The org's allowance from ``/limits``; returns the Bulk API 2.0 query jobs it has left today."""
        limits = self._json("the /limits read", lambda sf: sf.limits(timeout=self._timeout)) or {}
        daily = limits.get("DailyApiRequests") or {}
        if "Max" in daily and "Remaining" in daily:
            self._org.note(int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))
        return int((limits.get("DailyBulkV2QueryJobs") or {}).get("Remaining", 0))

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
            return sf.query(soql, include_deleted=query_all, timeout=self._timeout, headers=BATCH_SIZE)

        def more(url: str) -> Callable[[Salesforce], Any]:
            return lambda sf: sf.query_more(url, identifier_is_url=True, include_deleted=query_all,
                                            timeout=self._timeout, headers=BATCH_SIZE)

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
        if SalesforcePeople.CONTACT in self.settings.objects:
            specs["won_opportunities"] = StreamSpec("won_opportunities", "OpportunityContactRole", ROLE_FIELDS,
                                                    stamp="Opportunity.SystemModstamp",
                                                    condition="Opportunity.IsWon = true")
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
        if "job" in state or (cursor is None and self._pulls_in_bulk(spec)):
            yield from self._pull_bulk(spec, state, until)
            return
        where = self._window(spec, until)
        if "after_id" in state:  # resuming inside a run's read, after the last row stored
            stamp = state["since"]
            where.append(f"({spec.stamp} > {stamp} OR ({spec.stamp} = {stamp} AND Id > "
                         f"{soql_string(state['after_id'])}))")
        elif "since" in state:  # a new run: from where the last one reached, less the look-back
            low = datetime.fromisoformat(state["since"].replace("Z", "+00:00"))
            where.append(f"{spec.stamp} >= {soql_datetime(low - timedelta(seconds=self.settings.lookback_seconds))}")
        soql = f"{self._select(spec, where)} ORDER BY {spec.stamp}, Id"
        for records in self._query(f"the {spec.sobject} query", soql, query_all=spec.query_all):
            if records:
                last = records[-1]
                stamp = soql_datetime(parse_datetime(_value(last, spec.stamp)))
                position = {"since": stamp, "after_id": last["Id"], "until": until}
                yield self._page(spec, records, dump_cursor(position))
        yield Page(spec.name, dump_cursor({"since": until}))

    def _window(self, spec: StreamSpec, until: str) -> list[str]:
        where = [f"{spec.stamp} <= {until}"]
        if spec.query_all and not spec.people:
            where.append("IsDeleted = false")
        if spec.condition:
            where.append(spec.condition)
        return where

    @staticmethod
    def _select(spec: StreamSpec, where: Sequence[str]) -> str:
        return f"SELECT {', '.join(spec.fields)} FROM {spec.sobject} WHERE {' AND '.join(where)}"

    # -- bulk pull --------------------------------------------------------------------------------------------

    def _pulls_in_bulk(self, spec: StreamSpec) -> bool:
        """A first read of an object above `bulk_pull_above` records goes through a Bulk API 2.0 query job, while
        the org has query jobs left today."""
        big = self._object_sizes().get(spec.sobject, 0) > self.settings.bulk_pull_above
        if big and self._bulk_query_jobs <= 0:
            log.warning("tenant %r: the org has no Bulk API 2.0 query jobs left today; %s is read through REST "
                        "queries", self.context.tenant, spec.sobject)
        return big and self._bulk_query_jobs > 0

    def _object_sizes(self) -> dict[str, int]:
        """Records in each object read, from one Record Count call a run (Salesforce's counts are approximate)."""
        if self._record_counts is None:
            names = ",".join(sorted({spec.sobject for spec in self._specs.values()}))
            answer = self._json("the record count", lambda sf: sf.restful(
                "limits/recordCount", params={"sObjects": names}, timeout=self._timeout)) or {}
            self._record_counts = {o["name"]: int(o.get("count", 0)) for o in answer.get("sObjects", [])}
        return self._record_counts

    def _pull_bulk(self, spec: StreamSpec, state: Mapping[str, Any], until: str) -> Iterator[Page]:
        """The object read whole by a query job, its pages stored 2,000 rows at a time; the cursor names the job
        and the results page being read, so a run that stops resumes from that page of the same job."""
        job, locator = state.get("job"), state.get("locator", "")
        if job is not None and not self._bulk_job_readable(spec, job):
            job, locator = None, ""
        if job is None:
            job = self._bulk.start_query(spec.sobject, self._select(spec, self._window(spec, until)),
                                         query_all=spec.query_all)
            self._bulk_query_jobs -= 1
            self._bulk_wait(spec, job)
        for records, following in self._bulk.query_pages(spec.sobject, job, locator, self._bulk_types(spec)):
            here = dump_cursor({"job": job, "locator": locator, "until": until})
            after = dump_cursor({"job": job, "locator": following, "until": until} if following else
                                {"since": until})
            pages = list(chunked(records, QUERY_BATCH)) or [[]]
            for number, rows in enumerate(pages, 1):
                yield self._page(spec, rows, after if number == len(pages) else here)
            locator = following

    def _bulk_wait(self, spec: StreamSpec, job: str) -> None:
        try:
            self._bulk.wait(spec.sobject, job, query=True)
        except JobNotDone as exc:
            raise ConnectorError(self.context.tenant, f"the Bulk API 2.0 read of {spec.sobject} did not finish: "
                                 f"{exc}; what was read is kept, and the next run starts the read again") from exc

    def _bulk_job_readable(self, spec: StreamSpec, job: str) -> bool:
        """Whether the query job a stopped run was reading can still be read (finished, and not yet deleted)."""
        try:
            self._bulk.wait(spec.sobject, job, query=True)
        except (JobNotDone, SalesforceError) as exc:
            log.info("tenant %r: the %s query job %s cannot be read on (%s); starting a new one",
                     self.context.tenant, spec.sobject, job, exc)
            return False
        return True

    def _bulk_types(self, spec: StreamSpec) -> dict[str, str]:
        """Each field's describe type where a Bulk CSV cell must be read as other than text: the standard ones
        known, custom ones from the describe of the object holding them."""
        types: dict[str, str] = {}
        for column in spec.fields:
            *path, name = column.split(".")
            if name in STANDARD_TYPES:
                types[column] = STANDARD_TYPES[name]
            elif name.endswith("__c") and not (path and path[-1].endswith("__r")):
                # a custom lookup's object is not named by its relationship: its fields stay text
                holder = path[-1] if path else spec.sobject
                types[column] = str(self._fields_described(holder).get(name, {}).get("type", "string"))
        return types

    def _page(self, spec: StreamSpec, records: Sequence[dict[str, Any]], cursor: str) -> Page:
        contacts: list[Contact] = []
        activities: list[Activity] = []
        outcomes: list[Outcome] = []
        skipped: list[SkippedRecord] = []
        gone: list[GoneContact] = []
        for record in records:
            try:
                if spec.sobject == "OpportunityContactRole":
                    outcomes.extend(_won(record))
                elif spec.people:
                    people = SalesforcePeople(spec.sobject)
                    contact = self._contact(people, record)
                    if people is SalesforcePeople.LEAD:  # a Contact's outcome comes from its won opportunities
                        outcomes.append(self._outcome(record, contact))
                    reason = _gone(record)
                    if reason:
                        gone.append(GoneContact(contact.id, reason, merged_into=self._merged_into(record)))
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

    def _merged_into(self, record: Mapping[str, Any]) -> str | None:
        """The Contact a converted Lead became, when the tenant scores Contacts: its history goes on there."""
        if record.get("IsDeleted") or SalesforcePeople.CONTACT not in self.settings.objects:
            return None
        return record.get("ConvertedContactId") or None

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
            created_at=parse_datetime(record["CreatedDate"]) if record.get("CreatedDate") else None,
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

    def write_batch(self, pending: int) -> int:
        """Writes a call takes: all of them (up to an ingest job's worth) when more than `bulk_write_above` are
        due, so they go out as Bulk API 2.0 ingest jobs; else one sObject Collections call's worth."""
        return min(pending, INGEST_JOB_SIZE) if pending > self.settings.bulk_write_above else COLLECTION_SIZE

    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        if len(writes) > self.settings.bulk_write_above:
            return self._write_in_bulk(writes)
        results: list[WriteResult] = []
        for chunk in chunked(list(writes), COLLECTION_SIZE):
            records = [{"attributes": {"type": _sobject(w.contact_kind)}, "id": w.contact_id,
                        **self._writable(_sobject(w.contact_kind), w.values)} for w in chunk]
            answers = self._collections("PATCH", "composite/sobjects", records)
            results += [_result(w.key, a, remote_id=w.contact_id) for w, a in zip(chunk, answers, strict=True)]
        return results

    def _write_in_bulk(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        """One ingest job (update by Id) per object; each record's success or error read back from the job's
        results, as a collections call's would be."""
        by_object: dict[str, list[PropertyWrite]] = defaultdict(list)
        for write in writes:
            by_object[_sobject(write.contact_kind)].append(write)
        results: dict[str, WriteResult] = {}
        for sobject, group in by_object.items():
            rows = [{"Id": w.contact_id, **self._writable(sobject, w.values)} for w in group]
            try:
                outcome = {r.record_id: r for r in self._bulk.update(sobject, rows)}
                missing = "Salesforce's ingest job did not process it"
            except JobNotDone as exc:
                outcome, missing = {}, str(exc)
            except SalesforceError as exc:
                reason = refusal(classify(exc))
                if reason is None:
                    raise
                outcome, missing = {}, reason
            for w in group:
                results[w.key] = _ingest_result(w, outcome.get(w.contact_id), missing)
        return [results[w.key] for w in writes]

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        records = [self._task_record(task) for task in tasks]
        field = self.settings.task_external_id
        # upserted by the External ID when the tenant names one: a second call finds the task, never makes another
        method, path = ("PATCH", f"composite/sobjects/Task/{field}") if field else ("POST", "composite/sobjects")
        try:
            answers = self._collections(method, path, records, idempotent=bool(field))
        except OutcomeUnknown as exc:  # a 5xx or a lost answer: looked up before anything is sent again
            return [WriteResult(t.key, ok=False, error=str(exc), outcome_unknown=True) for t in tasks]
        return [_result(t.key, answer) for t, answer in zip(tasks, answers, strict=True)]

    def _task_record(self, task: TaskRequest) -> dict[str, Any]:
        key = task_token(task.key)
        field = self.settings.task_external_id
        token = "" if field else f" [{key}]"
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
        if field:
            record[field] = key
        return record

    def _collections(self, method: str, path: str, records: list[dict[str, Any]], *, idempotent: bool = True
                     ) -> list[dict[str, Any]]:
        """One sObject Collections call and its per-record answers in request order; records refused on a row
        lock (another process was writing them) are sent again, up to `LOCK_RETRIES` times."""
        answers = self._collection_call(method, path, records, idempotent)
        for attempt in range(LOCK_RETRIES):
            locked = [i for i, answer in enumerate(answers) if "UNABLE_TO_LOCK_ROW" in _error_codes(answer)]
            if not locked:
                break
            self.context.clock.sleep(2.0 ** attempt)
            again = self._collection_call(method, path, [records[i] for i in locked], idempotent)
            for i, answer in zip(locked, again, strict=True):
                answers[i] = answer
        return answers

    def _collection_call(self, method: str, path: str, records: list[dict[str, Any]], idempotent: bool
                         ) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "records": records}
        try:
            answers = self._call(lambda sf: sf.restful(path, method=method, json=body, timeout=self._timeout),
                                 idempotent=idempotent)
        except SalesforceError as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            return [{"success": False, "errors": [{"statusCode": "REFUSED", "message": reason}]}] * len(records)
        if not isinstance(answers, list) or len(answers) != len(records):
            raise OutcomeUnknown(self.context.tenant, "Salesforce's collections answer did not give one result per "
                                 "record; what it carried out is looked up before anything is sent again")
        return list(answers)

    def creates_tasks_once(self) -> bool:
        return bool(self.settings.task_external_id)  # upserted by it: a second call finds the first task

    def find_tasks(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        """The tasks holding these tasks' tokens, in the tenant's Task External ID field or at the end of their
        subjects: one ``queryAll`` per 200 tasks (deleted tasks count: one a person deleted is not made again). A
        subject look-up reads the keyed tasks of the tasks' people (``WhoId``, an indexed field, so Salesforce need
        not scan every Task's subject) and matches their tokens here."""
        field = self.settings.task_external_id
        found: dict[str, str] = {}
        for chunk in chunked(list(tasks), TOKENS_PER_LOOKUP):
            tokens = {task_token(task.key): task.key for task in chunk}
            if field:
                soql = f"SELECT Id, {field} FROM Task WHERE {field} IN ({', '.join(map(soql_string, tokens))})"
            else:
                people = ", ".join(sorted({soql_string(task.contact_id) for task in chunk}))
                soql = f"SELECT Id, Subject FROM Task WHERE WhoId IN ({people}) AND Subject LIKE '%]'"
            for records in self._query("the look-up of tasks by key", soql, query_all=True):
                for record in records:
                    token = record.get(field) if field else _subject_token(record.get("Subject") or "")
                    if token in tokens:
                        found[tokens[token]] = str(record["Id"])
        return found

    def close(self) -> None:
        self._session.close()


def _pair(login: tuple[Any, Any]) -> tuple[str, str]:
    """simple-salesforce's (session id, instance) as text."""
    return str(login[0]), str(login[1])


def _gone(record: Mapping[str, Any]) -> str | None:
    """Why Salesforce no longer lets this person be scored or written, or None: a converted Lead is read-only (its
    person lives on as the Contact it points to), a deleted record is in the recycle bin."""
    if record.get("IsDeleted"):
        return "deleted in Salesforce"
    if record.get("IsConverted"):
        into = record.get("ConvertedContactId")
        return f"converted into Contact {into}" if into else "converted"
    return None


def _won(role: Mapping[str, Any]) -> list[Outcome]:
    """The outcome a won Opportunity's contact role gives its Contact."""
    if not role.get("ContactId"):
        return []
    closed = _value(role, "Opportunity.CloseDate")
    return [Outcome(str(role["ContactId"]), converted=True, converted_at=parse_datetime(closed) if closed else None)]


def _sobject(kind: ContactKind) -> str:
    return "Lead" if kind is ContactKind.LEAD else "Contact"


def _subject_token(subject: str) -> str:
    return subject[subject.rfind("[") + 1:-1] if subject.endswith("]") else ""


def _error_codes(answer: Mapping[str, Any]) -> set[str]:
    return {str(e.get("statusCode")) for e in answer.get("errors") or []}


def _result(key: str, answer: Mapping[str, Any], remote_id: str | None = None) -> WriteResult:
    if answer.get("success"):
        return WriteResult(key, ok=True, remote_id=str(answer.get("id") or remote_id))
    reasons = "; ".join(f"{e.get('statusCode', 'ERROR')}: {e.get('message', '')}".rstrip(": ")
                        for e in answer.get("errors") or [])
    return WriteResult(key, ok=False, error=reasons or "Salesforce refused it without a reason",
                       permanent=bool(_error_codes(answer) & PERMANENT_ERRORS))


def _ingest_result(write: PropertyWrite, result: IngestResult | None, missing: str) -> WriteResult:
    """An ingest job's result for one write, worded as a collections answer is (``CODE: message``)."""
    if result is None:
        return WriteResult(write.key, ok=False, error=missing)
    if result.ok:
        return WriteResult(write.key, ok=True, remote_id=write.contact_id)
    code, _, rest = (result.error or "").partition(":")
    message = rest.rsplit(":", 1)[0] if rest.count(":") else rest
    return WriteResult(write.key, ok=False, error=f"{code}: {message}".rstrip(": "),
                       permanent=code in PERMANENT_ERRORS)


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
            flat[f"{prefix}{name}"] = None if value == "" else value  # Salesforce keeps no empty text: it is null
    return flat


def _value(record: Mapping[str, Any], name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return None if value == "" else value


def _field_type(spec: PropertySpec) -> str:
    if spec.type == "number":
        return "Number(16, 2)"
    if spec.options:
        return f"Picklist with values {', '.join(spec.options)}"
    return "Text(255)"
