"""The ``crm.connection`` block of a tenant file, one model per CRM.

These models import no SDK, so ``leadpulse validate`` checks a tenant file on a machine without network or
credentials. Each is registered under the ``leadpulse.settings`` entry-point group by the CRM's name. Secrets
never live here: a model names the secrets it needs (`needed_secrets`) and the tenant file's ``crm.secrets``
block must reference each one from the environment or a file.

Relative paths are resolved against the tenant file's folder, passed as ``context={"base_dir": ...}``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

from pydantic import Field, ValidationInfo, field_validator, model_validator

from leadpulse.core.contract import CrmSettings
from leadpulse.core.strict import refuse


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if value is None or value.is_absolute() or base is None:
        return value
    return Path(base) / value


class FileSettings(CrmSettings):
    """A CRM kept in local files: contacts, activities and outcomes in CSV or JSONL; writes go to `results`."""

    contacts: Path
    activities: Path | None = None
    outcomes: Path | None = None
    results: Path

    @field_validator("contacts", "activities", "outcomes", "results", mode="after")
    @classmethod
    def _relative_to_tenant_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and value.suffix.lower() not in {".csv", ".jsonl"}:
            raise refuse("a .csv or .jsonl file", repr(str(value)))
        return _resolve(value, info)


class HubSpotTier(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"


class HubSpotSettings(CrmSettings):
    """A HubSpot portal reached with a private-app token. `tier` and `capacity_pack` set the rate budget."""

    required_secrets: ClassVar[tuple[str, ...]] = ("access_token",)
    known_secrets: ClassVar[tuple[str, ...]] = ("access_token",)

    base_url: str = "https://api.hubapi.com"
    tier: HubSpotTier = HubSpotTier.PROFESSIONAL
    capacity_pack: bool = False
    lookback_seconds: int = Field(300, ge=0)
    daily_limit: int | None = Field(None, gt=0)


class SalesforceAuth(StrEnum):
    PASSWORD = "password"
    CLIENT_CREDENTIALS = "client_credentials"
    JWT = "jwt"


_SALESFORCE_SECRETS = {
    SalesforceAuth.PASSWORD: ("password",),
    SalesforceAuth.CLIENT_CREDENTIALS: ("client_secret",),
    SalesforceAuth.JWT: ("private_key",),
}


#: the first API version without SOAP ``login()``, the password login without a connected app
SOAP_LOGIN_UNTIL = 65.0


class SalesforcePeople(StrEnum):
    LEAD = "Lead"
    CONTACT = "Contact"


class SalesforceSettings(CrmSettings):
    """A Salesforce org: `instance_url` directly, or a login `domain` (login, test or a My Domain host).

    `objects` says whom the tenant scores: its Leads, its Contacts, or both. `ca_bundle` is a file of certificates to
    trust besides the system's (an org reached through a TLS-inspecting proxy). A first pull of an object holding
    more than `bulk_pull_above` records goes through Bulk API 2.0 query jobs, and a write-back of more than
    `bulk_write_above` records through an ingest job. A run stops, checkpointed, before the org's 24-hour API
    allowance falls under `api_reserve` of its maximum, left to the org's other integrations. `task_external_id`
    names an External ID field on Task: tasks are then upserted by it, which cannot make a second one.
    """

    known_secrets: ClassVar[tuple[str, ...]] = ("password", "security_token", "client_secret", "private_key")

    instance_url: str | None = Field(None, pattern=r"^https://")
    domain: str | None = None
    api_version: str = Field("62.0", pattern=r"^\d+\.\d$")
    auth: SalesforceAuth = SalesforceAuth.PASSWORD
    username: str | None = None
    client_id: str | None = None
    lookback_seconds: int = Field(300, ge=0)
    objects: tuple[SalesforcePeople, ...] = Field((SalesforcePeople.LEAD,), min_length=1)
    ca_bundle: Path | None = None
    bulk_pull_above: int = Field(50_000, ge=0)
    bulk_write_above: int = Field(10_000, ge=0)
    api_reserve: float = Field(0.2, ge=0, lt=1)
    task_external_id: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")

    @field_validator("ca_bundle", mode="after")
    @classmethod
    def _bundle_relative_to_tenant_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    def token_url(self) -> str:
        """Where OAuth tokens are asked for: the org's own host when given, else its login domain's."""
        if self.instance_url:
            host = self.instance_url.rstrip("/")
        elif self.domain in ("login", "test"):
            host = f"https://{self.domain}.salesforce.com"
        else:
            host = f"https://{self.domain}"
        return f"{host}/services/oauth2/token"

    def sdk_domain(self) -> str:
        """The login host as simple-salesforce names it (``login``, ``test``, ``acme.my``: the part before
        ``.salesforce.com``), for the logins it makes itself (SOAP, JWT bearer)."""
        for host in (self.domain, urlparse(self.instance_url or "").hostname):
            if host in ("login", "test"):
                return host
            if host and host.endswith(".salesforce.com"):
                return host.removesuffix(".salesforce.com")
        return "login"

    @model_validator(mode="after")
    def _auth_has_its_identity(self) -> SalesforceSettings:
        if self.auth in (SalesforceAuth.PASSWORD, SalesforceAuth.JWT) and not self.username:
            raise refuse(f"a username for auth {self.auth.value}", "none")
        if self.auth in (SalesforceAuth.CLIENT_CREDENTIALS, SalesforceAuth.JWT) and not self.client_id:
            raise refuse(f"a client_id for auth {self.auth.value}", "none")
        if not (self.instance_url or self.domain):
            raise refuse("instance_url or domain (login, test or your My Domain host)", "neither")
        if self.auth is SalesforceAuth.PASSWORD and not self.client_id and float(self.api_version) >= SOAP_LOGIN_UNTIL:
            raise refuse(f"a client_id (a connected app) for auth password at api_version {self.api_version}: "
                         f"Salesforce's SOAP login() is gone from API {SOAP_LOGIN_UNTIL} on", "none")
        return self

    def needed_secrets(self) -> tuple[str, ...]:
        # the password flow goes through the connected app when one is named (OAuth), else through SOAP login
        app = ("client_secret",) if self.auth is SalesforceAuth.PASSWORD and self.client_id else ()
        return _SALESFORCE_SECRETS[self.auth] + app


class PipedrivePlan(StrEnum):
    LITE = "lite"
    GROWTH = "growth"
    PREMIUM = "premium"
    ULTIMATE = "ultimate"


class PipedriveAuth(StrEnum):
    API_TOKEN = "api_token"
    OAUTH = "oauth"


class PipedriveSettings(CrmSettings):
    """A Pipedrive company: `base_url` (``https://{company}.pipedrive.com``), reached with a user's API token or as
    an OAuth app (`auth`). An OAuth app named by its `client_id` gets its access tokens (an hour each) from the
    secrets ``refresh_token`` and ``client_secret`` at `oauth_url`; without a `client_id` it is handed an access
    token (the ``access_token`` secret) kept fresh by something else. `plan` sets the burst window; `seats` with it,
    the daily token budget the company should have (the budget itself is read off Pipedrive's answers). Follow-ups
    are activities of `activity_type` (a key of the company's activity types). `status_field` names the person field
    holding the lifecycle stage, by its display name; persons are read with it as their status. Left out, it is the
    tenant's ``writeback.status_property``.
    """

    known_secrets: ClassVar[tuple[str, ...]] = ("api_token", "access_token", "refresh_token", "client_secret")

    base_url: str = Field(pattern=r"^https?://")
    auth: PipedriveAuth = PipedriveAuth.API_TOKEN
    client_id: str | None = Field(None, min_length=1)
    oauth_url: str = Field("https://oauth.pipedrive.com", pattern=r"^https?://")
    plan: PipedrivePlan = PipedrivePlan.LITE
    seats: int = Field(1, ge=1)
    lookback_seconds: int = Field(300, ge=0)
    activity_type: str = Field("task", min_length=1)
    status_field: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _client_id_is_oauths(self) -> PipedriveSettings:
        if self.client_id and self.auth is not PipedriveAuth.OAUTH:
            raise refuse("auth oauth with a client_id (an OAuth app's; with auth api_token leave client_id out)",
                         f"auth {self.auth.value}", ("auth",))
        return self

    def needed_secrets(self) -> tuple[str, ...]:
        if self.auth is PipedriveAuth.API_TOKEN:
            return ("api_token",)
        return ("refresh_token", "client_secret") if self.client_id else ("access_token",)
