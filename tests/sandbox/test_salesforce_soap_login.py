"""The Salesforce imitation's SOAP API login(), driven through simple-salesforce's username, password and security
token login with Salesforce's login hosts routed to the sandbox."""
import xml.etree.ElementTree as ET

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from test_salesforce_contract import routed

from leadpulse.sandbox import Sandbox

PARTNER = "{urn:partner.soap.sforce.com}"
INVALID_LOGIN = ("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")


@pytest.fixture
def sb(sandbox_factory):
    return sandbox_factory("salesforce", contacts=200, seed=7)


def soap_client(sb: Sandbox, **overrides) -> Salesforce:
    creds = sb.credentials
    options = {"username": creds["username"], "password": creds["password"],
               "security_token": creds["security_token"], **overrides}
    return Salesforce(**options, session=routed(sb))


def login_envelope(username: str, password: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
            '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
            f"<n1:username>{username}</n1:username><n1:password>{password}</n1:password></n1:login></env:Body></env:Envelope>")


def test_soap_login_opens_a_session_the_rest_api_takes(sb):
    sf = soap_client(sb)
    assert sf.sf_instance == f"127.0.0.1:{sb.port}" and sb.tokens.is_valid(sf.session_id)
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_login_result_names_the_instance_the_user_and_the_org(sb):
    creds = sb.credentials
    answer = routed(sb).post("https://login.salesforce.com/services/Soap/u/62.0",
                             login_envelope(creds["username"], creds["password"] + creds["security_token"]),
                             headers={"content-type": "text/xml", "SOAPAction": "login"})
    result = ET.fromstring(answer.content).find(f".//{PARTNER}loginResponse/{PARTNER}result")
    info = {child.tag.removeprefix(PARTNER): child.text for child in result.find(f"{PARTNER}userInfo")}
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/xml")
    assert result.findtext(f"{PARTNER}serverUrl") == f"https://127.0.0.1:{sb.port}/services/Soap/u/62.0/{info['organizationId'][:15]}"
    assert (result.findtext(f"{PARTNER}passwordExpired"), result.findtext(f"{PARTNER}sandbox")) == ("false", "false")
    assert info["organizationId"].startswith("00D") and len(info["organizationId"]) == 18
    assert (info["userName"], info["userId"]) == (creds["username"], result.findtext(f"{PARTNER}userId"))
    assert info["userEmail"] == creds["username"] and info["sessionSecondsValid"] == "7200"


@pytest.mark.parametrize("overrides", [
    {"security_token": "WRONGTOKEN0123456789abcd"},
    {"security_token": ""},
    {"password": "nope"},
    {"username": "nobody@example.com"},
], ids=["wrong token", "no token", "wrong password", "unknown user"])
def test_a_wrong_credential_is_refused_with_invalid_login(sb, overrides):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        soap_client(sb, **overrides)
    assert (failure.value.code, failure.value.auth_message) == INVALID_LOGIN


def test_a_refused_login_is_a_500_soap_fault_with_the_login_fault_detail(sb):
    creds = sb.credentials
    answer = routed(sb).post("https://login.salesforce.com/services/Soap/u/62.0",
                             login_envelope(creds["username"], creds["password"]),
                             headers={"content-type": "text/xml", "SOAPAction": "login"})
    fault = ET.fromstring(answer.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert answer.status_code == 500
    assert fault.findtext("faultstring") == "INVALID_LOGIN: Invalid username, password, security token; or user locked out."
    assert fault.find("detail/{urn:fault.partner.soap.sforce.com}LoginFault") is not None


def test_login_is_not_available_in_api_version_65_and_later(sb):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        soap_client(sb, version="65.0")
    assert (failure.value.code, failure.value.auth_message) == (
        "INVALID_OPERATION", "The SOAP Login operation is not available in the API version specified (65.0). "
                             "Refer to the documentation for supported versions.")
    assert soap_client(sb, version="64.0").query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_a_retired_api_version_answers_unsupported_api_version(sb):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        soap_client(sb, version="30.0")
    assert (failure.value.code, failure.value.auth_message) == ("UNSUPPORTED_API_VERSION", "Invalid Api version specified on URL")


def test_an_org_without_soap_login_enabled_refuses_it_with_invalid_operation(sb):
    sb.vendor.soap_login_enabled = False
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        soap_client(sb)
    assert failure.value.code == "INVALID_OPERATION" and "disabled" in failure.value.auth_message


def test_a_soap_login_is_not_counted_against_the_daily_allowance(sandbox_factory):
    sb = sandbox_factory("salesforce", contacts=200, tier="developer")
    sf = soap_client(sb)
    sf.query("SELECT Id FROM Lead LIMIT 1")
    assert sf.api_usage["api-usage"].used == 1 and sb.stats.count("soap.login", 200) == 1


def test_a_body_that_is_no_login_envelope_is_a_client_fault(sb):
    answer = routed(sb).post("https://login.salesforce.com/services/Soap/u/62.0", "not a SOAP envelope",
                             headers={"content-type": "text/xml", "SOAPAction": "login"})
    assert answer.status_code == 500
    assert ET.fromstring(answer.content).findtext(".//faultcode") == "soapenv:Client"
