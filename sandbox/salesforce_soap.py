"""Salesforce's SOAP API ``login()`` for the imitation: a username, a password and a security token, no connected app.

``POST /services/Soap/u/{version}`` (the partner endpoint, which simple-salesforce's ``SalesforceLogin`` calls on
``https://{domain}.salesforce.com`` with ``SOAPAction: login``) takes a SOAP 1.1 envelope whose body is
``<login xmlns="urn:partner.soap.sforce.com"><username/><password/></login>``, the password followed by the user's
security token: calls never come from one of the org's trusted IP ranges here, so the token is always required.

Success is a 200 ``loginResponse`` as Salesforce's partner WSDL gives it: ``metadataServerUrl``, ``passwordExpired``,
``sandbox`` (false: a production org), ``serverUrl`` (the org's instance, ``/services/Soap/u/{version}/{orgId}``
with the 15-character org id; clients take its host as the instance, so it is the sandbox's own address),
``sessionId`` (a token the REST API takes as a bearer token, as it takes Salesforce's session ids), ``userId`` and
``userInfo`` (the integration user and the org). Everything else answers 500 with a SOAP fault whose ``detail``
carries ``sf:exceptionCode`` and ``sf:exceptionMessage``, which simple-salesforce raises as
``SalesforceAuthenticationFailed(code, message)``:

- a wrong username or password, or a missing or wrong security token: ``sf:LoginFault`` ``INVALID_LOGIN``
  "Invalid username, password, security token; or user locked out." (faultstring ``INVALID_LOGIN: `` and the
  message; faultcode ``INVALID_LOGIN``, unprefixed, as captured answers show it);
- API version 65.0 and later, where Salesforce no longer offers ``login()``: ``INVALID_OPERATION`` "The SOAP Login
  operation is not available in the API version specified (65.0). Refer to the documentation for supported
  versions.";
- API version 30.0 and earlier, retired since Summer '25, or a version that is no ``NN.0``:
  ``UNSUPPORTED_API_VERSION`` "Invalid Api version specified on URL", as the SOAP API end-of-life policy says;
- ``soap_login_enabled = False`` (orgs made in Winter '26 and later have ``login()`` off until an admin enables it):
  ``INVALID_OPERATION`` "SOAP API login() is disabled by default in this org. ...";
- a body that is no SOAP envelope, or one whose operation is not the partner ``login``: a ``soapenv:Client`` fault
  without detail.

``login()`` counts toward the org's login rate limit, not its API request allowance (the SOAP guide: the
LimitInfoHeader comes with "all calls, except for login()"), so it is not counted here and answers no
``Sforce-Limit-Info``. Salesforce retires ``login()`` in every API version with Summer '27; the sandbox answers
as Salesforce does before that release, so a connector that logs in this way works here and will not there.

References: Salesforce's SOAP API Developer Guide (``login()``, ``LoginResult``, ``GetUserInfoResult``,
LimitInfoHeader, SOAP API End-of-Life Policy), its help article "Platform SOAP API login() Retirement" (not in
65.0 and later, retired in Summer '27, off by default in new orgs); simple-salesforce 1.12.10 ``login.py`` and the
captured answers in its tests. Not confirmed, so this module's choice: the fault type (``UnexpectedErrorFault``),
the ``sf:`` faultcode and the wording past the first sentence of the disabled-org answer (an integration's issue
tracker quotes it), and the wording of the client faults. Not served: the other SOAP calls, ``LoginScopeHeader``
and the enterprise endpoint ``/services/Soap/c``.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from .salesforce_auth import ORG_ID, instance_url
from .salesforce_records import INTEGRATION_OWNER, INTEGRATION_USER, sf_id
from .server import Request, Response, Vendor, VendorError, route

SOAP_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
FAULT_NAMESPACE = "urn:fault.partner.soap.sforce.com"
XML_CONTENT_TYPE = "text/xml;charset=UTF-8"
FIRST_VERSION, LAST_LOGIN_VERSION = 31, 64
"""``login()`` answers in API versions 31.0 to 64.0: 30.0 and earlier are retired, 65.0 and later lack it."""
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."
SESSION_SECONDS = 7200
_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VERSION = re.compile(r"(\d+)\.0")


class SoapFault(VendorError):
    """A SOAP 1.1 fault: 500 with ``faultcode``, ``faultstring`` and, for Salesforce's own faults, a ``detail``
    naming ``sf:exceptionCode`` and ``sf:exceptionMessage``."""

    def __init__(self, faultcode: str, faultstring: str, detail: str = ""):
        body = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE}" '
                f'xmlns:sf="{FAULT_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                f"<soapenv:Body><soapenv:Fault><faultcode>{escape(faultcode)}</faultcode>"
                f"<faultstring>{escape(faultstring)}</faultstring>{detail}</soapenv:Fault></soapenv:Body>"
                "</soapenv:Envelope>")
        super().__init__(500, body.encode())
        self.response.content_type = XML_CONTENT_TYPE

    @classmethod
    def salesforce(cls, code: str, message: str, fault_type: str = "UnexpectedErrorFault",
                   faultcode: str | None = None) -> SoapFault:
        """One of Salesforce's faults: ``sf:{code}`` (or ``faultcode``) and ``{code}: {message}``."""
        detail = (f'<detail><sf:{fault_type} xsi:type="sf:{fault_type}"><sf:exceptionCode>{code}</sf:exceptionCode>'
                  f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:{fault_type}></detail>")
        return cls(faultcode or f"sf:{code}", f"{code}: {message}", detail)

    @classmethod
    def client(cls, message: str) -> SoapFault:
        """A request the SOAP layer cannot read, before Salesforce looks at it."""
        return cls("soapenv:Client", message)


def security_token(seed: int) -> str:
    """The integration user's security token: 24 letters and digits, as Salesforce's are, fixed by the seed."""
    digest = hashlib.sha256(f"security-token-{seed}".encode()).digest()
    return "".join(_ALPHANUMERIC[byte % len(_ALPHANUMERIC)] for byte in digest[:24])


def login_arguments(body: bytes) -> tuple[str, str]:
    """The username and password of a partner ``login`` envelope; a client fault when the body is none."""
    try:
        envelope = ET.fromstring(body)
    except ET.ParseError as exc:
        raise SoapFault.client(f"Unable to parse the request body as XML: {exc}") from None
    soap_body = envelope.find(f"{{{SOAP_ENVELOPE}}}Body") if envelope.tag == f"{{{SOAP_ENVELOPE}}}Envelope" else None
    operation = next(iter(soap_body), None) if soap_body is not None else None
    if operation is None or operation.tag != f"{{{PARTNER}}}login":
        asked = envelope.tag if operation is None else operation.tag
        raise SoapFault.client(f"No operation available for request {asked}, please check the WSDL for the service.")
    return operation.findtext(f"{{{PARTNER}}}username") or "", operation.findtext(f"{{{PARTNER}}}password") or ""


def xml_fields(fields: tuple[tuple[str, str | None], ...]) -> str:
    """Elements in order; a None value is ``xsi:nil``, as Salesforce sends an empty field."""
    return "".join(f'<{name} xsi:nil="true"/>' if value is None else f"<{name}>{escape(value)}</{name}>"
                   for name, value in fields)


class SoapLogin(Vendor):
    """The SOAP API ``login()`` of the integration user; mixed into the Salesforce imitation."""

    soap_login_enabled = True
    """False answers every login as an org that has not enabled SOAP API ``login()`` does."""

    # Set by the OAuth mixin: the integration user's credentials, shared by every grant that takes a password.
    username: str
    password: str

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.security_token = security_token(self.crm.tenant.seed)

    @route("POST", "/services/Soap/u/{version}", name="soap.login", auth=False, limited=False)
    def soap_login(self, request: Request):
        version = self._login_version(request.params["version"])
        if not self.soap_login_enabled:
            raise SoapFault.salesforce("INVALID_OPERATION", "SOAP API login() is disabled by default in this org. "
                                       "Contact the org administrator to enable SOAP API login().")
        username, password = login_arguments(request.body)
        if (username, password) != (self.username, self.password + self.security_token):
            raise SoapFault.salesforce("INVALID_LOGIN", INVALID_LOGIN, "LoginFault", faultcode="INVALID_LOGIN")
        return Response(200, self._login_result(request, version).encode(), content_type=XML_CONTENT_TYPE)

    def _login_version(self, version: str) -> str:
        number = _VERSION.fullmatch(version)
        if number is None or int(number[1]) < FIRST_VERSION:
            raise SoapFault.salesforce("UNSUPPORTED_API_VERSION", "Invalid Api version specified on URL")
        if int(number[1]) > LAST_LOGIN_VERSION:
            raise SoapFault.salesforce("INVALID_OPERATION", "The SOAP Login operation is not available in the API "
                                       f"version specified ({version}). Refer to the documentation for supported "
                                       "versions.")
        return version

    def _login_result(self, request: Request, version: str) -> str:
        instance, org = instance_url(request), ORG_ID[:15]
        result = xml_fields((
            ("metadataServerUrl", f"{instance}/services/Soap/m/{version}/{org}"), ("passwordExpired", "false"),
            ("sandbox", "false"), ("serverUrl", f"{instance}/services/Soap/u/{version}/{org}"),
            ("sessionId", self.tokens.issue()), ("userId", INTEGRATION_USER)))
        return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE}" '
                f'xmlns="{PARTNER}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
                f"<loginResponse><result>{result}<userInfo>{xml_fields(self._user_info())}</userInfo></result>"
                "</loginResponse></soapenv:Body></soapenv:Envelope>")

    def _user_info(self) -> tuple[tuple[str, str | None], ...]:
        owner = INTEGRATION_OWNER
        return (
            ("accessibilityMode", "false"), ("chatterExternal", "false"), ("currencySymbol", "$"),
            ("orgAttachmentFileSizeLimit", "5242880"), ("orgDefaultCurrencyIsoCode", "USD"),
            ("orgDefaultCurrencyLocale", "en_US"), ("orgDisallowHtmlAttachments", "false"),
            ("orgHasPersonAccounts", "false"), ("organizationId", ORG_ID), ("organizationMultiCurrency", "false"),
            ("organizationName", "LeadPulse Sandbox"), ("profileId", sf_id("00e", 1)), ("roleId", None),
            ("sessionSecondsValid", str(SESSION_SECONDS)), ("userDefaultCurrencyIsoCode", None),
            ("userEmail", owner.email), ("userFullName", f"{owner.first_name} {owner.last_name}"),
            ("userId", INTEGRATION_USER), ("userLanguage", "en_US"), ("userLocale", "en_US"),
            ("userName", self.username), ("userTimeZone", "GMT"), ("userType", "Standard"), ("userUiSkin", "Theme3"))
