"""The Salesforce imitation's Bulk API 2.0 and /limits, driven through simple-salesforce's ``bulk2`` and, where the
SDK does not reach, plain requests on its session."""
import csv
import gzip
import io
import re

import pytest
import requests
from simple_salesforce.bulk2 import ColumnDelimiter, LineEnding
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError
from test_salesforce_contract import client, lead_ids

from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.salesforce_records import is_deleted, is_lead

BULK_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def sb(sandbox_factory):
    return sandbox_factory("salesforce", contacts=600, seed=7)


@pytest.fixture
def sf(sb):
    return client(sb)


def call(sf, method: str, path: str, **kwargs) -> requests.Response:
    """A raw call under the SDK's base URL (``jobs/query``...), with its session and token."""
    headers = {"Authorization": f"Bearer {sf.session_id}", **kwargs.pop("headers", {})}
    return sf.session.request(method, sf.base_url + path, headers=headers, **kwargs)


def rows(text: str, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def query_rows(sf, soql: str, **options) -> list[dict]:
    return [row for page in sf.bulk2.Lead.query(soql, wait=0, **options) for row in rows(page)]


def new_query_job(sf, soql: str = "SELECT Id FROM Lead", **body) -> str:
    answer = call(sf, "POST", "jobs/query", json={"operation": "query", "query": soql, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def completed_query_job(sf, soql: str = "SELECT Id FROM Lead") -> str:
    job = new_query_job(sf, soql)
    call(sf, "GET", f"jobs/query/{job}")
    assert call(sf, "GET", f"jobs/query/{job}").json()["state"] == "JobComplete"
    return job


def ingest(sf, data: str, operation: str = "update", sobject: str = "Lead", **options) -> dict:
    """An ingest job taken through upload, close and two status reads: its final job info."""
    job = call(sf, "POST", "jobs/ingest", json={"object": sobject, "operation": operation, **options}).json()
    assert call(sf, "PUT", f"jobs/ingest/{job['id']}/batches", data=data.encode(),
                headers={"Content-Type": "text/csv"}).status_code == 201
    call(sf, "PATCH", f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    call(sf, "GET", f"jobs/ingest/{job['id']}")
    return call(sf, "GET", f"jobs/ingest/{job['id']}").json()


# -- query jobs ---------------------------------------------------------------------------------------------------

def test_query_job_returns_the_live_rows_of_the_rest_query(sf):
    bulk = query_rows(sf, "SELECT Id, Email FROM Lead")
    rest = sf.query_all("SELECT Id, Email FROM Lead")["records"]
    assert [(r["Id"], r["Email"]) for r in bulk] == [(r["Id"], r["Email"]) for r in rest]


def test_query_all_job_includes_deleted_rows_like_rest_query_all(sb, sf):
    every = [row for page in sf.bulk2.Lead.query_all("SELECT Id, IsDeleted FROM Lead", wait=0) for row in rows(page)]
    deleted = {r["Id"] for r in every if r["IsDeleted"] == "true"}
    assert len(every) == len(lead_ids(sb)) and deleted
    assert deleted == {sb.crm.id_of(i) for i in range(sb.crm.size) if is_lead(i) and is_deleted(i, sb.crm.size)}
    assert not deleted & {r["Id"] for r in query_rows(sf, "SELECT Id FROM Lead")}


def test_results_page_by_locator_each_with_its_header(sf):
    pages = list(sf.bulk2.Lead.query("SELECT Id FROM Lead", max_records=100, wait=0))
    assert len(pages) > 2 and all(page.startswith('"Id"\n') for page in pages)
    ids = [row["Id"] for page in pages for row in rows(page)]
    assert ids == sorted(set(ids)) and len(ids) == len(query_rows(sf, "SELECT Id FROM Lead"))


def test_last_page_has_the_locator_null_and_each_page_its_count(sf):
    job = completed_query_job(sf)
    first = call(sf, "GET", f"jobs/query/{job}/results", params={"maxRecords": 250})
    assert first.headers["Sforce-NumberOfRecords"] == "250" and first.headers["Sforce-Locator"] != "null"
    last = call(sf, "GET", f"jobs/query/{job}/results", params={"locator": first.headers["Sforce-Locator"]})
    total = call(sf, "GET", f"jobs/query/{job}").json()["numberRecordsProcessed"]
    assert last.headers["Sforce-Locator"] == "null"
    assert int(last.headers["Sforce-NumberOfRecords"]) == total - 250 == len(rows(last.text))


def test_csv_quotes_every_value_and_leaves_nulls_empty(sf):
    job = completed_query_job(sf, "SELECT Id, Rating, IsConverted, LastModifiedDate, NumberOfEmployees, "
                                  "AnnualRevenue FROM Lead")
    lines = call(sf, "GET", f"jobs/query/{job}/results").text.splitlines()
    assert lines[0] == '"Id","Rating","IsConverted","LastModifiedDate","NumberOfEmployees","AnnualRevenue"'
    shape = re.compile(r'^"00Q\w{15}",("(Hot|Warm|Cold)")?,"(true|false)","[^"]+","\d+","\d+\.\d+(E\d+)?"$')
    assert all(shape.match(line) for line in lines[1:]), [line for line in lines[1:] if not shape.match(line)][:3]
    assert any(',,"' in line for line in lines[1:])  # a Lead without a Rating
    assert all(BULK_DATETIME.match(row["LastModifiedDate"]) for row in rows("\n".join(lines)))


def test_doubles_are_written_as_java_prints_them(sb, sf):
    lead = lead_ids(sb)[0]
    sf.Lead.update(lead, {"AnnualRevenue": 912260031})
    found = query_rows(sf, f"SELECT AnnualRevenue, NumberOfEmployees FROM Lead WHERE Id = '{lead}'")
    assert found[0]["AnnualRevenue"] == "9.12260031E8" and found[0]["NumberOfEmployees"].isdigit()


def test_relationship_columns_are_named_by_their_path(sf):
    page = next(sf.bulk2.Contact.query("SELECT Id, Account.Industry, Owner.Email FROM Contact", wait=0))
    bulk = rows(page)
    rest = sf.query_all("SELECT Id, Account.Industry, Owner.Email FROM Contact")["records"]
    assert page.startswith('"Id","Account.Industry","Owner.Email"\n')
    expected = [((r["Account"] or {}).get("Industry") or "", (r["Owner"] or {}).get("Email") or "") for r in rest]
    assert [(r["Account.Industry"], r["Owner.Email"]) for r in bulk] == expected
    assert any(r["Owner"] is None for r in rest)  # a contact without an owner: an empty cell under Owner.Email


def test_delimiter_and_line_ending_follow_the_job(sf):
    page = next(sf.bulk2.Lead.query("SELECT Id, Email FROM Lead LIMIT 3", wait=0,
                                    column_delimiter=ColumnDelimiter.SEMICOLON, line_ending=LineEnding.CRLF))
    assert page.startswith('"Id";"Email"\r\n') and page.count("\r\n") == 4


def test_a_query_job_is_in_progress_on_its_first_read_and_complete_after(sf):
    job = new_query_job(sf)
    assert call(sf, "GET", f"jobs/query/{job}").json()["state"] == "InProgress"
    done = call(sf, "GET", f"jobs/query/{job}").json()
    assert done["state"] == "JobComplete" and done["jobType"] == "V2Query" and done["object"] == "Lead"
    assert done["numberRecordsProcessed"] == len(query_rows(sf, "SELECT Id FROM Lead")) and done["apiVersion"] == 59.0


def test_results_before_the_job_completes_answer_412_job_not_complete(sf):
    job = new_query_job(sf)
    early = call(sf, "GET", f"jobs/query/{job}/results")
    assert early.status_code == 412
    assert early.json() == [{"message": "can only download query results of successfully completed bulk job with "
                             "status: JOB_COMPLETE. Current status: UPLOAD_COMPLETE", "errorCode": "JOB_NOT_COMPLETE"}]


def test_results_in_another_api_version_answer_409(sf):
    job = completed_query_job(sf)
    other = sf.session.get(sf.base_url.replace("v59.0", "v60.0") + f"jobs/query/{job}/results",
                           headers={"Authorization": f"Bearer {sf.session_id}"})
    assert other.status_code == 409


def test_bad_soql_is_refused_when_the_job_is_created(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        list(sf.bulk2.Lead.query("SELECT Id FRM Lead", wait=0))
    assert failure.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as failure:
        list(sf.bulk2.Lead.query("SELECT Nope__c FROM Lead", wait=0))
    assert failure.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_count_and_offset_are_refused_as_bulk_api_2_does_not_take_them(sf):
    for soql in ("SELECT COUNT() FROM Lead", "SELECT Id FROM Lead LIMIT 5 OFFSET 5"):
        answer = call(sf, "POST", "jobs/query", json={"operation": "query", "query": soql})
        assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "API_ERROR"


def test_results_are_gzipped_when_asked_and_plain_otherwise(sf):
    job = completed_query_job(sf)
    zipped = call(sf, "GET", f"jobs/query/{job}/results", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.raw.read(decode_content=False)).decode().startswith('"Id"\n')
    plain = call(sf, "GET", f"jobs/query/{job}/results", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.text.startswith('"Id"\n')


def test_aborted_query_job_cannot_be_aborted_again_and_is_deleted_with_204(sf):
    job = new_query_job(sf)
    assert call(sf, "PATCH", f"jobs/query/{job}", json={"state": "Aborted"}).json()["state"] == "Aborted"
    again = call(sf, "PATCH", f"jobs/query/{job}", json={"state": "Aborted"})
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    deleted = call(sf, "DELETE", f"jobs/query/{job}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = call(sf, "GET", f"jobs/query/{job}")
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "NOT_FOUND"


def test_a_running_query_job_cannot_be_deleted(sf):
    refused = call(sf, "DELETE", f"jobs/query/{new_query_job(sf)}")
    assert refused.status_code == 400
    assert refused.json() == [{"message": "Error encountered when deleting the job because the job is not terminated",
                               "errorCode": "API_ERROR"}]


# -- ingest jobs --------------------------------------------------------------------------------------------------

def test_bulk_update_writes_and_echoes_values_as_salesforce_reads_them(sb, sf):
    sb.vendor.add_custom_field("Lead", "Lead_Score__c")
    leads = lead_ids(sb)[:2]
    result = sf.bulk2.Lead.update(records=[{"Id": leads[0], "Lead_Score__c": "42.5", "AnnualRevenue": "912260031"},
                                           {"Id": leads[1], "Lead_Score__c": "7", "AnnualRevenue": ""}], wait=0)
    assert result[0]["numberRecordsProcessed"] == 2 and result[0]["numberRecordsFailed"] == 0
    assert [sf.Lead.get(lead)["Lead_Score__c"] for lead in leads] == [42.5, 7.0]
    done = {r["sf__Id"]: r for r in rows(sf.bulk2.Lead.get_successful_records(result[0]["job_id"]))}
    assert done[leads[0]]["sf__Created"] == "false" and done[leads[0]]["AnnualRevenue"] == "9.12260031E8"
    assert done[leads[1]]["Lead_Score__c"] == "7.0"


def test_failed_rows_carry_salesforce_sf_error(sb, sf):
    leads = lead_ids(sb)[:3]
    sb.faults.fail_records([leads[0]])
    data = (f"Id,Title,NumberOfEmployees\n{leads[0]},Chief Bulk Officer,5\nnope,Chief Bulk Officer,5\n"
            f"{leads[1]},Chief Bulk Officer,many\n{leads[2]},Chief Bulk Officer\n")
    info = ingest(sf, data)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 4 and info["numberRecordsFailed"] == 4
    failed = call(sf, "GET", f"jobs/ingest/{info['id']}/failedResults").text
    assert failed.splitlines()[0] == '"sf__Id","sf__Error",Id,Title,NumberOfEmployees'
    assert [(r["sf__Id"], r["sf__Error"]) for r in rows(failed)] == [
        (leads[0], "FIELD_CUSTOM_VALIDATION_EXCEPTION:Property values were not valid:--"),
        ("", "MALFORMED_ID:malformed id nope:Id --"),
        ("", "INVALID_FIELD:Failed to deserialize field at col 2. Due to, 'many' is not a valid value for the type "
             "xsd:int:NumberOfEmployees --"),
        ("", "INVALID_FIELD:Number of fields in header is different from the row. header = 3 row = 2:--")]
    assert all(sf.Lead.get(lead)["Title"] != "Chief Bulk Officer" for lead in leads)


def test_a_read_only_field_fails_each_row_as_the_rest_write_path_does(sb, sf):
    lead = lead_ids(sb)[0]
    info = ingest(sf, f"Id,Name\n{lead},Someone Else\n")
    failed = rows(call(sf, "GET", f"jobs/ingest/{info['id']}/failedResults").text)
    assert failed[0]["sf__Id"] == lead
    assert failed[0]["sf__Error"].startswith("INVALID_FIELD_FOR_INSERT_UPDATE:Unable to create/update fields: Name.")
    assert failed[0]["sf__Error"].endswith(":Name --")


def test_empty_cells_leave_fields_alone_and_na_empties_them(sb, sf):
    lead = lead_ids(sb)[0]
    before = sf.Lead.get(lead)
    ingest(sf, f"Id,Title,Rating\n{lead},,#N/A\n")
    after = sf.Lead.get(lead)
    assert after["Title"] == before["Title"] and after["Rating"] is None


def test_an_unknown_column_fails_the_whole_job_and_writes_nothing(sb, sf):
    lead = lead_ids(sb)[0]
    with pytest.raises(SalesforceOperationError, match="InvalidBatch : Field name not found : Nope__c"):
        sf.bulk2.Lead.update(records=[{"Id": lead, "Title": "Chief Bulk Officer", "Nope__c": "1"}], wait=0)
    assert sf.Lead.get(lead)["Title"] != "Chief Bulk Officer"


def test_a_failed_job_lists_its_rows_as_unprocessed(sb, sf):
    lead = lead_ids(sb)[0]
    info = ingest(sf, f"Id,Nope__c\n{lead},1\n")
    assert info["state"] == "Failed" and info["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"
    assert call(sf, "GET", f"jobs/ingest/{info['id']}/unprocessedrecords").text == f'Id,Nope__c\n"{lead}","1"\n'


def test_a_line_ending_other_than_the_jobs_fails_the_job(sb, sf):
    info = ingest(sf, f"Id,Title\r\n{lead_ids(sb)[0]},CTO\r\n")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"


def test_data_is_uploaded_once_per_job(sb, sf):
    job = call(sf, "POST", "jobs/ingest", json={"object": "Lead", "operation": "update"}).json()
    assert job["state"] == "Open" and job["contentUrl"].endswith(f"/jobs/ingest/{job['id']}/batches")
    data = f"Id,Title\n{lead_ids(sb)[0]},CTO\n".encode()
    assert call(sf, "PUT", f"jobs/ingest/{job['id']}/batches", data=data).status_code == 201
    again = call(sf, "PUT", f"jobs/ingest/{job['id']}/batches", data=data)
    assert again.status_code == 400 and again.json()[0]["message"].startswith("Found multiple contents for job")


def test_bulk_insert_creates_tasks(sb, sf):
    lead = lead_ids(sb)[0]
    result = sf.bulk2.Task.insert(records=[{"WhoId": lead, "Subject": "Call back"}, {"Subject": "Nobody"}], wait=0)
    assert result[0]["numberRecordsProcessed"] == 2 and result[0]["numberRecordsFailed"] == 1
    created = rows(sf.bulk2.Task.get_successful_records(result[0]["job_id"]))
    assert created[0]["sf__Created"] == "true" and created[0]["sf__Id"].startswith("00T")
    assert len(sb.crm.tasks()) == 1
    failed = rows(sf.bulk2.Task.get_failed_records(result[0]["job_id"]))
    assert failed[0]["sf__Error"] == "REQUIRED_FIELD_MISSING:Required fields are missing: [WhoId]:WhoId --"


def test_an_ingest_operation_the_sandbox_does_not_serve_is_refused_by_name(sf):
    refused = call(sf, "POST", "jobs/ingest", json={"object": "Lead", "operation": "delete"})
    assert refused.status_code == 400 and "sandbox" in refused.json()[0]["message"]


# -- limits -------------------------------------------------------------------------------------------------------

def test_bulk_calls_count_against_the_daily_allowance_that_limits_reports(sandbox_factory):
    sf = client(sandbox_factory("salesforce", tier="developer"))
    completed_query_job(sf)
    answer = call(sf, "GET", "limits/")
    used = int(re.match(r"api-usage=(\d+)/15000", answer.headers["Sforce-Limit-Info"])[1])
    assert used == 4  # the job's creation, two status reads and this call
    assert answer.json()["DailyApiRequests"] == {"Max": 15_000, "Remaining": 15_000 - used}
    assert answer.json()["DailyBulkV2QueryJobs"] == {"Max": 10_000, "Remaining": 9_999}


def test_over_the_daily_allowance_bulk_calls_are_refused_like_rest_calls(sandbox_factory):
    sb = sandbox_factory("salesforce", rate_limits=True, clock=ManualClock())
    sb.limits.tune("DAILY", limit=1)
    sf = client(sb)
    new_query_job(sf)
    refused = call(sf, "POST", "jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"})
    assert refused.status_code == 403 and refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_daily_query_job_allowance_answers_limit_exceeded_until_it_rolls(sandbox_factory):
    clock = ManualClock()
    sb = sandbox_factory("salesforce", rate_limits=True, clock=clock)
    sb.vendor.bulk_query_jobs_per_day = 1
    sf = client(sb)
    new_query_job(sf)
    refused = call(sf, "POST", "jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"})
    assert refused.status_code == 400
    assert refused.json() == [{"message": "Max bulk v2 query jobs (1) per 24 hrs has been reached (2)",
                               "errorCode": "LIMIT_EXCEEDED"}]
    assert sf.limits()["DailyBulkV2QueryJobs"] == {"Max": 1, "Remaining": 0}
    clock.advance(86_401)
    assert new_query_job(sf).startswith("750")


def test_ingest_batches_and_result_storage_are_tallied_in_limits(sb, sf):
    completed = completed_query_job(sf)
    call(sf, "GET", f"jobs/query/{completed}/results")
    ingest(sf, f"Id,Title\n{lead_ids(sb)[0]},Chief Bulk Officer\n")
    limits = sf.limits()
    assert limits["DailyBulkApiBatches"] == {"Max": 15_000, "Remaining": 14_999}
    assert limits["DailyBulkV2QueryFileStorageMB"]["Remaining"] == limits["DailyBulkV2QueryFileStorageMB"]["Max"] - 1


# -- record counts ------------------------------------------------------------------------------------------------

def count_of(sf, sobject: str, include_deleted: bool = False) -> int:
    return sf.query(f"SELECT COUNT() FROM {sobject}", include_deleted=include_deleted)["totalSize"]


def test_record_count_agrees_with_a_count_query_of_the_same_objects(sf):
    answer = sf.restful("limits/recordCount", params={"sObjects": "Lead,Task"})
    assert answer == {"sObjects": [{"count": count_of(sf, "Lead"), "name": "Lead"},
                                   {"count": count_of(sf, "Task"), "name": "Task"}]}


def test_record_count_leaves_out_deleted_and_archived_rows(sf):
    counts = sf.restful("limits/recordCount", params={"sObjects": "Task"})["sObjects"]
    assert 0 < counts[0]["count"] < count_of(sf, "Task", include_deleted=True)


def test_record_count_without_objects_lists_every_object_by_name(sf):
    names = [entry["name"] for entry in sf.restful("limits/recordCount")["sObjects"]]
    assert names == sorted(o["name"] for o in sf.describe()["sobjects"])
    assert {"Lead", "Contact", "Task", "Event", "CampaignMember", "Opportunity"} <= set(names)


def test_record_count_leaves_out_objects_the_org_does_not_have(sf):
    answer = sf.restful("limits/recordCount", params={"sObjects": "Nope__c,Event"})
    assert [entry["name"] for entry in answer["sObjects"]] == ["Event"]


def test_record_count_is_an_api_call_with_sforce_limit_info(sb, sf):
    first = call(sf, "GET", "limits/recordCount", params={"sObjects": "Lead"})
    second = call(sf, "GET", "limits/recordCount", params={"sObjects": "Lead"})
    used = [int(re.match(r"api-usage=(\d+)/\d+$", a.headers["Sforce-Limit-Info"])[1]) for a in (first, second)]
    assert used[1] == used[0] + 1 and sb.stats.count("limits.recordCount", 200) == 2
    assert sf.limits()["DailyApiRequests"] == {"Max": 100_000, "Remaining": 100_000 - used[1] - 1}


def test_record_count_is_not_served_before_api_version_40(sf):
    answer = sf.session.get(sf.base_url.replace("/v59.0/", "/v39.0/") + "limits/recordCount",
                            headers={"Authorization": f"Bearer {sf.session_id}"})
    assert answer.status_code == 404 and answer.json()[0]["errorCode"] == "NOT_FOUND"
