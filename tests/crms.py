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


DRIVERS: tuple[CrmDriver, ...] = (HubSpotDriver(), SalesforceDriver())


def sync(crm: CrmDriver, sb: Sandbox, state_dir: Path, clock: Clock | None = None, *, environ: dict[str, str] | None
         = None, tenant: TenantConfig | None = None, **options: Any) -> RunSummary:
    """One sync of the CRM's demo tenant against `sb`, storing into `state_dir`."""
    return sync_tenant(tenant or crm.tenant(sb), state_dir=state_dir, clock=clock or ManualClock(AS_OF),
                       environ=crm.environ(sb) if environ is None else environ, **options)
