"""The crm.connection models: each CRM's settings and the secrets they call for."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadpulse.core.config.files import load_tenant
from leadpulse.core.errors import ConfigError

SCORING = """\
scoring:
  rules: [{when: {field: email, exists: true}, points: 1}]
  bands: [{name: all}]
  quadrant: {fit: 1, engagement: 1}
"""
SALESFORCE = """\
tenant: globex
crm:
  kind: salesforce
  connection:
    domain: test
"""
PIPEDRIVE = """\
tenant: initech
crm:
  kind: pipedrive
  connection:
    base_url: https://initech.pipedrive.com
"""


def load(tmp_path: Path, connection: str, secrets: str, head: str = SALESFORCE) -> str:
    """The refusal of a tenant file whose crm block is `head` with `connection` and `secrets` lines added (its
    path shown as FILE), or "ok"."""
    path = tmp_path / "tenant.yaml"
    path.write_text(f"{head}{connection}\n  secrets:\n{secrets}\n{SCORING}")
    try:
        load_tenant(path)
    except ConfigError as exc:
        return str(exc).replace(str(path), "FILE")
    return "ok"


def test_salesforce_password_login_needs_a_username_and_a_password(tmp_path: Path) -> None:
    assert load(tmp_path, "    username: api@globex.example", "    password: {env: SF_PASSWORD}") == "ok"
    assert load(tmp_path, "    auth: password", "    password: {env: SF_PASSWORD}") == (
        "FILE: crm.connection: expected a username for auth password, found none"
    )


def test_salesforce_client_credentials_need_a_client_secret(tmp_path: Path) -> None:
    connection = "    auth: client_credentials\n    client_id: 3MVG9"
    assert load(tmp_path, connection, "    client_secret: {env: SF_SECRET}") == "ok"
    assert load(tmp_path, connection, "    password: {env: SF_PASSWORD}") == (
        "FILE: crm.secrets.client_secret: expected a reference {env: NAME} or {file: PATH} "
        "(salesforce needs client_secret), found nothing"
    )


def test_salesforce_api_version_is_checked(tmp_path: Path) -> None:
    message = load(tmp_path, "    username: u\n    api_version: v62", "    password: {env: SF_PASSWORD}")
    assert message == r"FILE: crm.connection.api_version: expected text matching ^\d+\.\d$, found 'v62'"


@pytest.mark.parametrize("secret", ["{env: 1BAD}", "{env: A, file: b}"])
def test_a_malformed_secret_reference_is_refused(tmp_path: Path, secret: str) -> None:
    assert load(tmp_path, "    username: u", f"    password: {secret}").startswith("FILE: crm.secrets.password")


def test_a_pipedrive_oauth_app_with_a_client_id_needs_its_refresh_token_and_client_secret(tmp_path: Path) -> None:
    app = "    auth: oauth\n    client_id: 7f1c"
    both = "    refresh_token: {env: PD_REFRESH}\n    client_secret: {env: PD_SECRET}"
    assert load(tmp_path, app, both, PIPEDRIVE) == "ok"
    assert load(tmp_path, app, "    access_token: {env: PD_ACCESS}", PIPEDRIVE).startswith(
        "FILE: crm.secrets.refresh_token: expected a reference {env: NAME} or {file: PATH} (pipedrive needs "
        "refresh_token), found nothing")
    # without a client_id, an access token kept fresh by something else
    assert load(tmp_path, "    auth: oauth", "    access_token: {env: PD_ACCESS}", PIPEDRIVE) == "ok"


def test_a_pipedrive_client_id_goes_with_auth_oauth_only(tmp_path: Path) -> None:
    assert load(tmp_path, "    client_id: 7f1c", "    api_token: {env: PD_TOKEN}", PIPEDRIVE) == (
        "FILE: crm.connection.auth: expected auth oauth with a client_id (an OAuth app's; with auth api_token leave "
        "client_id out), found auth api_token")
