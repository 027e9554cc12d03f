"""Salesforce's OAuth 2.0 token endpoint for the imitation, and what a client needs to reach it.

``POST /services/oauth2/token`` serves four grants of one connected app (``client_id`` 3MVG9...):

- ``password``: ``client_id``, ``client_secret``, ``username``, ``password``;
- ``refresh_token``: ``client_id``, ``refresh_token``;
- ``client_credentials``: ``client_id`` and ``client_secret`` in the form or as HTTP Basic, and only on
  the org's own My Domain host: on ``login.salesforce.com`` or ``test.salesforce.com`` Salesforce
  answers 400 ``invalid_grant`` "request not supported on this domain";
- ``urn:ietf:params:oauth:grant-type:jwt-bearer``: ``assertion``, a JWT signed RS256 with the key of the
  connected app's certificate, claims ``iss`` (the client id), ``sub`` (the username), ``aud`` (the
  login URL ``https://login.salesforce.com`` or the org's My Domain URL: the sandbox is a production
  org, so ``https://test.salesforce.com`` is refused) and ``exp`` (seconds, a number or a numeric
  string, still in the future). Failures answer 400 as Salesforce does: a wrong ``iss`` ``invalid_client_id``
  "client identifier invalid"; a bad signature or a token that is no RS256 JWT ``invalid_grant``
  "invalid assertion"; a wrong ``aud`` "audience is invalid"; a past ``exp`` "expired authorization
  code"; an unknown ``sub`` "user hasn't approved this consumer".

Every answer is ``{access_token, instance_url, id, token_type, issued_at, signature}`` (the JWT grant adds
``scope`` and no refresh token); errors are ``{error, error_description}``.

Which host a call was meant for is its ``X-Forwarded-Host`` header, else its ``Host``: the sandbox's own
address is the org's My Domain (and its instance URL), as is :data:`MY_DOMAIN`. Clients such as
simple-salesforce build token URLs as ``https://{domain}.salesforce.com``; a ``requests`` session given
:func:`route_salesforce_hosts` sends those hosts to the sandbox, naming the host asked for in
``X-Forwarded-Host``, as a reverse proxy would.

The connected app's key pair is made once per process with ``cryptography``: ``credentials()`` gives
``private_key_file`` (PEM, PKCS#8) for clients to sign with and ``certificate_file``, the certificate
uploaded to the connected app.
"""
from __future__ import annotations

import atexit
import base64
import binascii
import datetime
import functools
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .salesforce_records import INTEGRATION_OWNER, INTEGRATION_USER
from .server import Request, Vendor, VendorError, route

LOGIN_URL = "https://login.salesforce.com"
GENERIC_HOSTS = ("login.salesforce.com", "test.salesforce.com")
MY_DOMAIN = "leadpulse-sandbox.my.salesforce.com"
"""The org's My Domain host; the sandbox's own address stands for it as well."""
ORG_ID = "00D5g0000000001AAA"
"""The org's id (18 characters), as identity URLs and the SOAP API's ``userInfo`` give it."""
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANTS = ("password", "client_credentials", "refresh_token", JWT_GRANT)


class OAuthRefusal(VendorError):
    """A token request Salesforce refuses: 400 with its ``{error, error_description}``."""

    def __init__(self, error: str, description: str):
        super().__init__(400, {"error": error, "error_description": description})


@dataclass(frozen=True)
class ConnectedAppKey:
    """The connected app's signing key, as files: the private key a client signs with, the certificate
    Salesforce verifies against."""

    private_key_file: str
    certificate_file: str

    def public_key(self) -> rsa.RSAPublicKey:
        certificate = x509.load_pem_x509_certificate(Path(self.certificate_file).read_bytes())
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # made below as RSA
        return key


@functools.cache
def connected_app_key() -> ConnectedAppKey:
    """This process's connected app key pair (RSA 2048 and a self-signed certificate), made on first use."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-salesforce-app-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadpulse sandbox connected app")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    private, public = folder / "connected-app.key", folder / "connected-app.crt"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return ConnectedAppKey(str(private), str(public))


class OAuth(Vendor):
    """The token endpoint and the connected app's credentials; mixed into the Salesforce imitation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client_id = "3MVG9sandbox" + hashlib.sha256(self.tokens.prefix.encode()).hexdigest()[:24]
        self.client_secret = f"sandbox-secret-{self.crm.tenant.seed}"
        self.username, self.password = INTEGRATION_OWNER.email, "sandbox-password"
        self.refresh_token = f"5Aep861sandbox{self.crm.tenant.seed}"

    def oauth_credentials(self) -> dict:
        key = connected_app_key()
        return {"client_id": self.client_id, "client_secret": self.client_secret, "username": self.username,
                "password": self.password, "refresh_token": self.refresh_token, "login_url": LOGIN_URL,
                "my_domain": MY_DOMAIN, "private_key_file": key.private_key_file,
                "certificate_file": key.certificate_file}

    @route("POST", "/services/oauth2/token", name="oauth.token", auth=False, limited=False)
    def token(self, request: Request):
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        form.update({k: v[0] for k, v in request.query.items() if k not in form})
        grant = form.get("grant_type")
        if grant not in GRANTS:
            raise OAuthRefusal("unsupported_grant_type", "grant type not supported")
        if grant == JWT_GRANT:
            self._check_assertion(form.get("assertion") or "", request)
            return {**self._token_answer(request), "scope": "api"}
        if grant == "client_credentials" and _asked_host(request) in GENERIC_HOSTS:
            raise OAuthRefusal("invalid_grant", "request not supported on this domain")
        client_id, client_secret = _client(form, request)
        if client_id != self.client_id:
            raise OAuthRefusal("invalid_client_id", "client identifier invalid")
        if grant != "refresh_token" and client_secret != self.client_secret:
            raise OAuthRefusal("invalid_client", "invalid client credentials")
        accepted = {"password": (form.get("username"), form.get("password")) == (self.username, self.password),
                    "refresh_token": form.get("refresh_token") == self.refresh_token,
                    "client_credentials": True}[grant]
        if not accepted:
            raise OAuthRefusal("invalid_grant", "authentication failure")
        return self._token_answer(request)

    def _check_assertion(self, assertion: str, request: Request) -> None:
        """Salesforce's checks of a JWT bearer assertion, in the order its answers suggest."""
        header, claims, signed, signature = _jwt_parts(assertion)
        if header.get("alg") != "RS256":
            raise OAuthRefusal("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.client_id:
            raise OAuthRefusal("invalid_client_id", "client identifier invalid")
        try:
            connected_app_key().public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise OAuthRefusal("invalid_grant", "invalid assertion") from None
        if claims.get("aud") not in (LOGIN_URL, f"https://{MY_DOMAIN}", instance_url(request)):
            raise OAuthRefusal("invalid_grant", "audience is invalid")
        expiry = _seconds(claims.get("exp"))
        if expiry is None:
            raise OAuthRefusal("invalid_grant", "invalid assertion")
        if expiry * 1000 <= self.crm.clock_ms():
            raise OAuthRefusal("invalid_grant", "expired authorization code")
        if claims.get("sub") != self.username:
            raise OAuthRefusal("invalid_grant", "user hasn't approved this consumer")

    def _token_answer(self, request: Request) -> dict:
        issued = str(self.crm.clock_ms())
        identity = f"{LOGIN_URL}/id/{ORG_ID}/{INTEGRATION_USER}"
        digest = hashlib.sha256((identity + issued + self.client_secret).encode()).digest()
        return {"access_token": self.tokens.issue(), "instance_url": instance_url(request),
                "id": identity, "token_type": "Bearer", "issued_at": issued,
                "signature": base64.b64encode(digest).decode()}


def instance_url(request: Request) -> str:
    """The org's instance URL a login answers with: the sandbox's own address, as the call reached it."""
    return f"https://{request.headers.get('Host')}"


def _asked_host(request: Request) -> str:
    host = request.headers.get("X-Forwarded-Host") or request.headers.get("Host") or ""
    return host.split(":")[0].lower()


def _client(form: dict, request: Request) -> tuple[str | None, str | None]:
    """The client id and secret: from the form, or from HTTP Basic as simple-salesforce sends them."""
    header = request.headers.get("Authorization") or ""
    if header[:6].lower() == "basic ":
        try:
            client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthRefusal("invalid_client", "invalid client credentials") from None
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _jwt_parts(assertion: str) -> tuple[dict, dict, bytes, bytes]:
    """(header, claims, signed bytes, signature) of a compact JWS; ``invalid assertion`` when it is none."""
    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("a JWT has three parts")
        header, claims = (json.loads(_unpad(part)) for part in parts[:2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("JWT header and claims are JSON objects")
        return header, claims, f"{parts[0]}.{parts[1]}".encode(), _unpad(parts[2])
    except (ValueError, binascii.Error):
        raise OAuthRefusal("invalid_grant", "invalid assertion") from None


def _unpad(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return int(value) if isinstance(value, str) and value.isdigit() else None


class _SalesforceHosts(requests.adapters.HTTPAdapter):
    """Sends calls for Salesforce's hosts to the sandbox, naming the host asked for in X-Forwarded-Host."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base = urlsplit(base_url)

    def send(self, request, *args, **kwargs):
        asked = urlsplit(request.url)
        request.url = urlunsplit((self.base.scheme, self.base.netloc, asked.path, asked.query, asked.fragment))
        request.headers["X-Forwarded-Host"] = asked.netloc
        return super().send(request, *args, **kwargs)


def route_salesforce_hosts(session: requests.Session, base_url: str) -> requests.Session:
    """Make ``session`` reach the sandbox at ``base_url`` when a client calls ``https://login.salesforce.com``,
    ``https://test.salesforce.com`` or the org's My Domain (:data:`MY_DOMAIN`); returns the session."""
    adapter = _SalesforceHosts(base_url)
    for host in (*GENERIC_HOSTS, MY_DOMAIN):
        session.mount(f"https://{host}/", adapter)
    return session
