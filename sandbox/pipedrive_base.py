"""What every part of the Pipedrive imitation shares: its settings, its error shape and its checked query parameters.

Query parameters are checked as v2 checks them: an unknown parameter, a boolean other than ``true``/``false``
or a number written otherwise answers 400. A parameter Pipedrive documents but the sandbox cannot honour
(``filter_id``: there are no saved filters here) answers 400 too, saying so, rather than being ignored.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .pipedrive_fields import (
    ORGANIZATION_FIELDS,
    ORGANIZATION_STANDARD,
    PERSON_FIELDS,
    PERSON_STANDARD,
    FieldCatalogue,
    References,
)
from .pipedrive_records import Fates, company_org_id, organization
from .pipedrive_wire import (
    CUSTOM_FIELDS_MAX,
    ERROR_INFO,
    IDS_MAX,
    LIST_DEFAULT,
    LIST_MAX,
    ListQuery,
    decode_cursor,
    encode_cursor,
    is_int,
    parse_rfc3339,
)
from .server import Request, Vendor, VendorError
from .synth import Activity

AUTH_PARAMS = frozenset({"api_token"})
VISIBILITY = frozenset({1, 3, 5, 7})
"""``visible_to`` values (1, 3 on Essential and Advanced plans; 1, 3, 5, 7 on Professional and Enterprise)."""
PAGING = frozenset({"limit", "cursor", "sort_by", "sort_direction", "updated_since", "updated_until"})
NOT_SERVED = frozenset({"filter_id", "lead_id"})


class PipedriveBase(Vendor):
    """Settings, shared state and helpers of the Pipedrive parts (see :mod:`leadpulse.sandbox.pipedrive`)."""

    name = "pipedrive"
    tiers = ("lite", "growth", "premium", "ultimate")
    seats = 1
    server_utc_offset_hours = 0.0
    """The zone of "midnight at server's timezone", when the token budget renews (Pipedrive does not say which)."""
    hammer_refusals = 10
    hammer_seconds = 10.0
    block_seconds = 60.0
    client_id = "sandbox-client"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tenant = self.crm.tenant
        self.fields = FieldCatalogue("person", tenant.seed, tenant.anchor_ms, 9000, 1000, PERSON_FIELDS,
                                     PERSON_STANDARD)
        self.org_fields = FieldCatalogue("organization", tenant.seed, tenant.anchor_ms, 4000, 500_000,
                                         ORGANIZATION_FIELDS, ORGANIZATION_STANDARD)
        self.fates = Fates(self.crm)
        self._edited: dict[int, Activity] = {}
        """Generated activities changed by a client, by id (added ones change in the CRM itself)."""
        self._lock = threading.Lock()

    # -- errors and lookups ------------------------------------------------------------------------------

    def error(self, status: int, message: str, **context) -> VendorError:
        body = {"success": False, "error": message, "error_info": ERROR_INFO, "data": None, "additional_data": None}
        if status in (401, 429):
            body["errorCode"] = status
        return VendorError(status, {**body, **context})

    def contact_index(self, contact_id: str) -> int:
        index = self.crm.ids.to_index(str(contact_id))
        if index is None or not 0 <= index < self.crm.size:
            raise self.error(404, "Person not found")
        return index

    def live_index(self, contact_id: Any) -> int:
        """A person that can be written to or linked: not deleted, not merged away."""
        index = self.contact_index(contact_id)
        if self.fates.gone(index):
            raise self.error(404, "Person not found")
        return index

    def survivor_id(self, person_id: int) -> int:
        """The id a person reads as now: the survivor's, once they were merged away."""
        return int(self.crm.id_of(self.fates.survivor(self.crm.index_of(str(person_id)))))

    def field_key(self, name: str) -> str:
        """The 40-character key of the person custom field called ``name`` (tests and demos)."""
        return self.fields.key_of(name)

    def org_field_key(self, name: str) -> str:
        """The 40-character key of the organization custom field called ``name``."""
        return self.org_fields.key_of(name)

    def org_id_of(self, index: int) -> int | None:
        record = self.crm.record(index)
        if "pipedrive_org_id" in record:
            return record["pipedrive_org_id"]
        return company_org_id(self.crm, index)

    def check_org(self, org_id: Any) -> None:
        """400 unless ``org_id`` is null or an organization of this company."""
        if org_id is not None and (not is_int(org_id) or organization(self.crm, org_id) is None):
            raise self.error(400, f"org_id {org_id!r} is not an organization of this company")

    def refs(self) -> References:
        owners = {owner.id for owner in self.crm.tenant.owners}

        def person(person_id: int) -> bool:
            index = self.crm.ids.to_index(str(person_id))
            return index is not None and 0 <= index < self.crm.size and not self.fates.gone(index)

        return References(user=owners.__contains__, org=lambda org_id: organization(self.crm, org_id) is not None,
                          person=person)

    # -- write bodies ----------------------------------------------------------------------------------

    def write_body(self, body: Any, writable: frozenset[str]) -> dict:
        """A PATCH body: a JSON object of ``writable`` fields only; 400 naming the others."""
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")
        unknown = sorted(set(body) - writable)
        if unknown:
            raise self.error(400, f"Unknown or read-only fields: {', '.join(unknown)}")
        return body

    def checked_name(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(400, "name must be a non-empty string")
        return value.strip()

    def checked_owner(self, value: Any) -> int:
        if not is_int(value) or not self.refs().user(value):
            raise self.error(400, f"owner_id {value!r} is not a user of this company")
        return value

    def checked_visibility(self, value: Any) -> int:
        if value not in VISIBILITY or not is_int(value):
            raise self.error(400, "visible_to must be one of 1, 3, 5, 7")
        return value

    def checked_label_ids(self, value: Any) -> list[int]:
        if not isinstance(value, list) or not all(is_int(i) for i in value):
            raise self.error(400, "label_ids must be an array of label ids")
        return list(value)

    # -- query parameters ------------------------------------------------------------------------------

    def check_params(self, request: Request, allowed: Iterable[str]) -> None:
        """400 for a parameter the endpoint does not document, or one the sandbox cannot honour."""
        names = set(request.query) - AUTH_PARAMS
        unknown = sorted(names - set(allowed) - NOT_SERVED)
        if unknown:
            raise self.error(400, f"Unknown query parameter(s): {', '.join(unknown)}")
        not_served = sorted(names & NOT_SERVED)
        if not_served:
            raise self.error(400, f"{', '.join(not_served)}: not served by this sandbox (no saved filters or leads)")

    def list_query(self, request: Request, sortable: tuple[str, ...]) -> ListQuery:
        limit = self.int_arg(request, "limit")
        if limit is not None and not 1 <= limit <= LIST_MAX:
            raise self.error(400, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        sort_by, direction = request.arg("sort_by") or "id", request.arg("sort_direction") or "asc"
        if sort_by not in sortable or direction not in ("asc", "desc"):
            raise self.error(400, f"sort_by must be one of {', '.join(sortable)} and sort_direction asc or desc")
        cursor = request.arg("cursor")
        try:
            after = decode_cursor(cursor, sort_by, direction) if cursor else None
            since, until = (parse_rfc3339(request.arg(name)) if request.arg(name) else None
                            for name in ("updated_since", "updated_until"))
        except ValueError as exc:
            raise self.error(400, f"Invalid parameter: {exc}. Times are RFC 3339, e.g. 2025-01-01T10:20:00Z") from None
        return ListQuery(limit or LIST_DEFAULT, sort_by, direction, after, since, until)

    def int_arg(self, request: Request, name: str) -> int | None:
        value = request.arg(name)
        if value is None:
            return None
        if not value.isdigit():
            raise self.error(400, f"{name} must be an integer, got {value!r}")
        return int(value)

    def bool_arg(self, request: Request, name: str) -> bool | None:
        value = request.arg(name)
        if value not in (None, "true", "false"):
            raise self.error(400, f"{name} must be true or false, got {value!r}")
        return None if value is None else value == "true"

    def ids_arg(self, request: Request) -> list[int] | None:
        raw = request.arg("ids")
        if raw is None:
            return None
        parts = raw.split(",")
        if not all(part.isdigit() for part in parts) or len(parts) > IDS_MAX:
            raise self.error(400, f"ids must be up to {IDS_MAX} comma-separated integers, got {raw!r}")
        return [int(part) for part in parts]

    def include_arg(self, request: Request, served: Iterable[str], documented: Iterable[str]) -> set[str]:
        """The ``include_fields`` asked for: 400 for undocumented names and for those the sandbox cannot fill."""
        asked = set(request.args("include_fields"))
        unknown = sorted(asked - set(documented))
        if unknown:
            raise self.error(400, f"include_fields: unknown field(s) {', '.join(unknown)}")
        missing = sorted(asked - set(served))
        if missing:
            raise self.error(400, f"include_fields {', '.join(missing)}: not served by this sandbox")
        return asked

    def custom_keys_arg(self, request: Request, catalogue: FieldCatalogue) -> list[str]:
        """The custom fields a read returns: those named in ``custom_fields`` (at most 15), else every one."""
        asked = request.args("custom_fields")
        if not asked:
            return list(catalogue.custom)
        unknown = [key for key in asked if key not in catalogue.custom]
        if len(asked) > CUSTOM_FIELDS_MAX or unknown:
            raise self.error(400, f"custom_fields takes up to {CUSTOM_FIELDS_MAX} existing field keys; "
                                  f"unknown: {', '.join(unknown) or 'none'}")
        return asked

    def labels_args(self, request: Request) -> bool:
        """``include_option_labels`` (served); ``include_labels=true`` is not (labels have no names here)."""
        if self.bool_arg(request, "include_labels"):
            raise self.error(400, "include_labels: not served by this sandbox (labels have no names here)")
        return bool(self.bool_arg(request, "include_option_labels"))

    # -- answers -----------------------------------------------------------------------------------------

    @staticmethod
    def listing(data: list[dict], query: ListQuery, last: tuple[int, int] | None) -> dict:
        cursor = None
        if last is not None:
            cursor = encode_cursor(query.sort_by, query.direction, last, data[-1]["id"])
        return {"success": True, "data": data, "additional_data": {"next_cursor": cursor}}

    def v1_listing(self, request: Request, items: list[dict]) -> dict:
        start, limit = self.int_arg(request, "start") or 0, self.int_arg(request, "limit") or 100
        page = items[start:start + limit]
        more = start + limit < len(items)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more,
                      **({"next_start": start + limit} if more else {})}
        return {"success": True, "data": page, "additional_data": {"pagination": pagination}}

    def custom_values(self, catalogue: FieldCatalogue, values: Mapping[str, Any], keys: list[str],
                      labels: bool) -> dict:
        fields = catalogue.custom
        return {key: fields[key].to_wire(values.get(fields[key].store_key), labels) for key in keys if key in fields}

    def write_custom(self, catalogue: FieldCatalogue, custom: Any) -> dict:
        """Values to store for a v2 ``custom_fields`` object; 400 naming the first bad field."""
        if not isinstance(custom, dict):
            raise self.error(400, "custom_fields must be an object of field key to value")
        write, refs = {}, self.refs()
        for key, value in custom.items():
            field_ = catalogue.custom.get(key)
            if field_ is None:
                raise self.error(400, f"Custom field {key!r} does not exist; create it with POST "
                                      f"/api/v2/{catalogue.entity}Fields")
            try:
                write[field_.store_key] = field_.from_wire(value, refs)
            except ValueError as exc:
                raise self.error(400, f"Invalid value for custom field {field_.name!r} ({key}): {exc}") from None
        return write
