"""How the contract suite drives each CRM: its sandbox, its tenant, what it holds of leadpulse's work, its faults.

The suite (tests/contract/test_sync_contract.py) asks the same of every connector through these drivers; a
connector joins it by adding a driver here. Each drives the real SDK against its sandbox over loopback.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from support import REPO_CONFIG

from leadpulse.connectors.hubspot import HubSpotConnector, wire_value
from leadpulse.connectors.pipedrive import STREAMS, PipedriveConnector
from leadpulse.connectors.salesforce import SalesforceConnector
from leadpulse.core.cli.demo import tenant_data
from leadpulse.core.clock import Clock, ManualClock, ScaledClock
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import Connector, ConnectorContext
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.faults import Faults
from leadpulse.sandbox.salesforce_records import is_deleted, is_lead, sf_id

#: the portal every contract test syncs: small enough to be quick, large enough for several batches of tasks
CONTACTS = 300
SEED = 21
#: the suite's "now": a manual clock starts here, so no test waits out a rate window for real
AS_OF = datetime.now(UTC).replace(microsecond=0)


class CrmDriver(abc.ABC):
    """One CRM as the contract suite sees it."""

    #: the sandbox's name for the CRM
    crm: ClassVar[str]
    connector: ClassVar[type[Connector]]
    #: the demo tenant file the suite points at the sandbox
    tenant_file: ClassVar[str]
    #: the environment variable the tenant file reads its secret from, and the tenant-file key a refusal names
    secret_variable: ClassVar[str]
    secret_key: ClassVar[str]
    #: the sandbox routes that write contacts and create tasks
    write_route: ClassVar[str]
    task_route: ClassVar[str]
    #: the status the CRM refuses a revoked credential with
    refused_status: ClassVar[int]
    sandbox_options: ClassVar[Mapping[str, Any]] = {}
    #: contract tests this CRM fails through a fault of the sandbox or the core, never of its connector: test name ->
    #: the fault, with its evidence; each is a strict expected failure for this CRM alone, so its fix unmarks it
    known_faults: ClassVar[Mapping[str, str]] = {}

    def prepare(self, sb: Sandbox) -> Sandbox:
        """`sb` set up as an admin would before leadpulse's first run (custom fields created, say)."""
        return sb

    def tenant(self, sb: Sandbox, **connection: Any) -> TenantConfig:
        """The demo tenant pointed at `sb`, its connection settings updated with `connection`."""
        path = REPO_CONFIG / "demo" / self.tenant_file
        return validate_tenant(tenant_data(path, **{**self.connection(sb), **connection}), path)

    @abc.abstractmethod
    def connection(self, sb: Sandbox) -> dict[str, Any]:
        """The connection settings that point a tenant at `sb`."""

    @abc.abstractmethod
    def environ(self, sb: Sandbox) -> dict[str, str]:
        """The environment the tenant's secrets resolve from."""

    def wrong_environ(self, sb: Sandbox) -> dict[str, str]:
        """Secrets the CRM refuses, as an expired or revoked credential is."""
        return {self.secret_variable: "revoked-0000-not-the-secret"}

    @abc.abstractmethod
    def owned_values(self, sb: Sandbox, contact_id: str) -> dict[str, str | None]:
        """The values leadpulse owns on a contact, as the CRM holds them on the wire: the fields its object has."""

    @abc.abstractmethod
    def tasks(self, sb: Sandbox) -> list[tuple[str, str]]:
        """Every task created through the API, as (contact id, subject)."""

    def task_calls(self, tasks: int) -> int:
        """The calls to `task_route` that create `tasks` tasks: one a batch of the connector's `task_batch_size`."""
        return -(-tasks // self.connector.task_batch_size)

    def wire(self, value: Any) -> str | None:
        """A value leadpulse wrote, as the CRM gives it back."""
        return None if value is None else str(value)

    @abc.abstractmethod
    def storm(self, faults: Faults) -> int:
        """Arm rate-limit refusals, 5xx, dropped and cut-off answers on reads, writes and task creation; how many
        rate-limit refusals the run will meet."""

    @abc.abstractmethod
    def quiet_calls(self) -> dict[str, int]:
        """The calls, by route, of a run with nothing changed since the last: at most one per object pulled."""

    def people(self, sb: Sandbox) -> list[str]:
        """The ids of the people a sync reads (the ones the CRM has not deleted)."""
        return [sb.crm.id_of(index) for index in range(sb.crm.size)]

    def state(self, sb: Sandbox) -> tuple[dict[str, dict[str, str | None]], Counter[tuple[str, str]]]:
        """What the CRM holds of leadpulse's work: owned values per contact, and tasks by (contact, subject)."""
        return {cid: self.owned_values(sb, cid) for cid in self.people(sb)}, Counter(self.tasks(sb))


class HubSpotDriver(CrmDriver):
    crm = "hubspot"
    connector = HubSpotConnector
    tenant_file = "hubspot-sandbox.yaml"
    secret_variable = "DEMO_HUBSPOT_TOKEN"
    secret_key = "crm.secrets.access_token"
    write_route = "contacts.batch_update"
    task_route = "tasks.batch_create"
    refused_status = 401
    OWNED = ("leadpulse_score", "leadpulse_fit", "leadpulse_engagement", "leadpulse_grade", "leadpulse_band",
             "leadpulse_quadrant", "leadpulse_reasons", "lifecyclestage")

    def connection(self, sb: Sandbox) -> dict[str, Any]:
        return {"base_url": sb.base_url, "lookback_seconds": 0}

    def environ(self, sb: Sandbox) -> dict[str, str]:
        return {self.secret_variable: sb.credentials["access_token"]}

    def owned_values(self, sb: Sandbox, contact_id: str) -> dict[str, str | None]:
        values = sb.vendor.properties_of(contact_id)
        return {name: values.get(name) for name in self.OWNED}

    def tasks(self, sb: Sandbox) -> list[tuple[str, str]]:
        return [(contact, t["properties"]["hs_task_subject"]) for t in sb.vendor.created_tasks()
                for contact in t["contacts"]]

    def wire(self, value: Any) -> str | None:
        return wire_value(value)

    def storm(self, faults: Faults) -> int:
        faults.fail_next("contacts.list", 429, times=6)
        faults.fail_next("calls.list", 503, times=4)
        faults.fail_next("contacts.batch_update", 502, times=2)
        faults.drop_next("emails.list", times=3)
        faults.drop_next("contacts.batch_update", times=2, applied=True)
        faults.truncate_next("meetings.list", times=2)
        faults.fail_next("tasks.batch_create", 429, times=3)
        return 9

    def quiet_calls(self) -> dict[str, int]:
        return {f"{stream}.search": 1 for stream in ("contacts", "calls", "emails", "meetings", "notes", "tasks")}


class SalesforceDriver(CrmDriver):
    crm = "salesforce"
    connector = SalesforceConnector
    tenant_file = "salesforce-sandbox.yaml"
    secret_variable = "DEMO_SF_PASSWORD"
    secret_key = "crm.secrets"
    write_route = "composite.update"
    task_route = "composite.create"
    refused_status = 400  # the token endpoint's invalid_grant
    #: the custom fields the demo tenant writes, as an admin creates them in Setup
    FIELDS: ClassVar[dict[str, str]] = {"Lead_Score__c": "double", "Lead_Fit__c": "double",
                                        "Lead_Engagement__c": "double",
                                        "Lead_Grade__c": "string", "Lead_Band__c": "string",
                                        "Lead_Quadrant__c": "string", "Lead_Score_Reasons__c": "string"}
    OWNED = (*FIELDS, "Status")

    def prepare(self, sb: Sandbox) -> Sandbox:
        for sobject in ("Lead", "Contact"):
            for name, kind in self.FIELDS.items():
                sb.vendor.add_custom_field(sobject, name, kind)
        return sb

    def connect(self, sb: Sandbox, **connection: Any) -> SalesforceConnector:
        """A connector for the tenant pointed at `sb` (its settings updated with `connection`), on a clock a
        thousand times faster than the wall's."""
        tenant = self.tenant(sb, **connection)
        secrets = tenant.resolve_secrets(self.environ(sb))
        return SalesforceConnector(ConnectorContext(tenant.name, tenant.crm.connection, secrets,
                                                    dict(tenant.fields), clock=ScaledClock(1000)))

    def connection(self, sb: Sandbox) -> dict[str, Any]:
        credentials = sb.credentials
        return {"instance_url": sb.base_url, "client_id": credentials["client_id"],
                "username": credentials["username"], "ca_bundle": sb.ca_cert_path, "objects": ["Lead", "Contact"]}

    def environ(self, sb: Sandbox) -> dict[str, str]:
        credentials = sb.credentials
        return {self.secret_variable: credentials["password"], "DEMO_SF_CLIENT_SECRET": credentials["client_secret"]}

    def wrong_environ(self, sb: Sandbox) -> dict[str, str]:
        return {**self.environ(sb), self.secret_variable: "revoked-0000-not-the-secret"}

    def people(self, sb: Sandbox) -> list[str]:
        """Live people: a Lead, or the Contact a converted Lead became."""
        found = []
        for index in range(sb.crm.size):
            if is_deleted(index, sb.crm.tenant.size):
                continue
            converted = is_lead(index) and sb.vendor.conversion_ms(index) is not None
            found.append(sf_id("003", index + 1) if converted else sb.crm.id_of(index))
        return found

    def owned_values(self, sb: Sandbox, contact_id: str) -> dict[str, str | None]:
        record = sb.crm.record(sb.crm.index_of(contact_id))  # a person's written fields live on the record
        owned = self.OWNED if contact_id.startswith("00Q") else tuple(self.FIELDS)  # a Contact has no Status
        return {name: record.get(name) for name in owned}

    def tasks(self, sb: Sandbox) -> list[tuple[str, str]]:
        return [(sb.crm.id_of(task.contact_index), task.attributes["subject"]) for task in sb.crm.tasks()]

    def wire(self, value: Any) -> Any:
        return None if value == "" else value  # Salesforce keeps no empty text: it stores null

    def storm(self, faults: Faults) -> int:
        faults.fail_next("query", 503, times=3)
        faults.drop_next("queryAll", times=2)
        faults.truncate_next("query", times=2)
        faults.fail_next("composite.update", 502, times=2)
        faults.drop_next("composite.update", times=2, applied=True)
        faults.drop_next("composite.create", times=1, applied=True)
        return 0  # Salesforce has no short rate window: its one limit is the 24-hour allowance

    def quiet_calls(self) -> dict[str, int]:
        # the login and the org's limits; CampaignMember and won opportunities' roles; Lead, Contact, Task, Event
        return {"oauth.token": 1, "limits": 1, "query": 2, "queryAll": 4}


class PipedriveDriver(CrmDriver):
    crm = "pipedrive"
    connector = PipedriveConnector
    tenant_file = "pipedrive-sandbox.yaml"
    secret_variable = "DEMO_PIPEDRIVE_TOKEN"
    secret_key = "crm.secrets"  # the refusal names crm.secrets: an API token or an OAuth app's access token
    write_route = "persons.update"
    task_route = "activities.create"
    refused_status = 401
    #: the company's plan, as the tenant file's crm.connection.plan says (one seat: the sandbox's default)
    sandbox_options: ClassVar[Mapping[str, Any]] = {"tier": "premium"}
    #: the person fields leadpulse writes, by the names the tenant file gives them (it creates all but the stage)
    OWNED = ("Lead score", "Lead fit", "Lead engagement", "Lead grade", "Lead band", "Lead quadrant",
             "Lead score reasons", "Lifecycle stage")
    #: the calls of every run, whatever changed: the person fields, whose keys the tenant's field names (and the
    #: status field's) are looked up by once a run; the organization fields, for the Organization.<name> fields the
    #: tenant reads
    FIXED_CALLS: ClassVar[dict[str, int]] = {"personFields.list": 1, "organizationFields.list": 1}
    #: the persons gone since the last run, read from v1 recents (a first run has none to look for)
    GONE_CALLS: ClassVar[dict[str, int]] = {"v1.recents.list": 1}
    #: a 429 of the burst window says so in its headers (none left, the window's reset): one without them would
    #: be the daily budget's, and end the run
    BURST_FULL: ClassVar[dict[str, str]] = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0",
                                            "x-ratelimit-reset": "1"}

    def connection(self, sb: Sandbox) -> dict[str, Any]:
        return {"base_url": sb.base_url, "lookback_seconds": 0}

    def environ(self, sb: Sandbox) -> dict[str, str]:
        return {self.secret_variable: sb.credentials["api_token"]}

    def people(self, sb: Sandbox) -> list[str]:
        """Live persons: v2 lists leave deleted and merged ones out."""
        return [sb.crm.id_of(index) for index in range(sb.crm.size) if not sb.vendor.fates.gone(index)]

    def owned_values(self, sb: Sandbox, contact_id: str) -> dict[str, Any]:
        """The person's fields as v2 gives them, by name; an option as its label (what leadpulse wrote)."""
        person = sb.vendor.person(sb.crm.index_of(contact_id), labels=True)["custom_fields"]
        keys = self.field_keys(sb)
        values = {name: person.get(keys.get(name, "")) for name in self.OWNED}  # a field not made yet: None
        return {name: value["label"] if isinstance(value, dict) else value for name, value in values.items()}

    def field_keys(self, sb: Sandbox) -> dict[str, str]:
        """The person fields' keys by name; a second field of a name leadpulse owns is no state any run ends with."""
        fields = list(sb.vendor.fields.custom.values())
        named = Counter(field.name for field in fields)
        twice = sorted(name for name in self.OWNED if named[name] > 1)
        assert not twice, f"Pipedrive has more than one person field named {', '.join(twice)}"
        return {field.name: field.key for field in fields}

    def tasks(self, sb: Sandbox) -> list[tuple[str, str]]:
        """Every activity created through the API, of whatever type, by its primary participant."""
        return [(sb.crm.id_of(made.contact_index), made.attributes["subject"]) for made in sb.crm.added_activities()]

    def task_calls(self, tasks: int) -> int:
        return tasks  # Pipedrive creates no batches: one POST /api/v2/activities a task

    def wire(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 255:  # a text field's length: the connector cuts the rest
            return value[:254] + "…"
        return value

    def storm(self, faults: Faults) -> int:
        faults.fail_next("persons.list", 429, times=2, headers=self.BURST_FULL)
        faults.fail_next("activities.list", 503, times=3)
        faults.fail_next("deals.list", 429, headers=self.BURST_FULL)
        faults.drop_next("deals.list", times=2)
        faults.fail_next("organizations.list", 502)
        faults.truncate_next("organizations.list", times=2)
        faults.fail_next("personFields.list", 502)
        faults.fail_next("organizationFields.list", 503)
        faults.fail_next("v1.activityTypes.list", 500)
        faults.drop_next("personFields.create", applied=True)  # the field made, its answer lost
        faults.fail_next("persons.update", 429, times=2, headers=self.BURST_FULL)
        faults.fail_next("persons.update", 502, times=2)
        faults.drop_next("persons.update", times=2, applied=True)
        faults.fail_next("activities.create", 429, times=2, headers=self.BURST_FULL)
        faults.drop_next("activities.create", applied=True)
        return 7

    def quiet_calls(self) -> dict[str, int]:
        lists = {f"{spec.path}.list": 1 for spec in STREAMS.values()}  # one list a stream: persons, activities, deals
        assert len(lists) == len(STREAMS)
        return {**lists, **self.GONE_CALLS, **self.FIXED_CALLS}


DRIVERS: tuple[CrmDriver, ...] = (HubSpotDriver(), SalesforceDriver(), PipedriveDriver())


def sync(crm: CrmDriver, sb: Sandbox, state_dir: Path, clock: Clock | None = None, *, environ: dict[str, str] | None
         = None, tenant: TenantConfig | None = None, **options: Any) -> RunSummary:
    """One sync of the CRM's demo tenant against `sb`, storing into `state_dir`."""
    return sync_tenant(tenant or crm.tenant(sb), state_dir=state_dir, clock=clock or ManualClock(AS_OF),
                       environ=crm.environ(sb) if environ is None else environ, **options)
