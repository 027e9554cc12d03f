"""API v2 organizations (``/api/v2/organizations``): list, get, and changes made while a sync runs.

``PATCH /api/v2/organizations/{id}`` takes the body of Pipedrive's v2 reference (``OrganizationRequestBody``),
checked as the person PATCH checks its own:

- a JSON object of ``name`` (a non-empty string), ``owner_id`` (a user of this company), ``visible_to`` (1, 3,
  5 or 7), ``label_ids`` (an array of ids), ``address`` (an object as an address custom field takes it,
  ``value`` required, or null) and ``custom_fields`` (values by 40-character key, in the v2 formats
  :mod:`.pipedrive_fields` lists; null clears one);
- any other key answers 400 naming it, ``add_time`` and ``update_time`` too (the reference lists them, and the
  person PATCH refuses them as read-only); a value of the wrong type or out of range answers 400 naming the
  field; an id that is not a number answers 400 and an unknown one 404, before the body is read.

The answer is ``{success: true, data: <the organization as GET gives it>}``. The organization's
``update_time`` moves to the change (kept in milliseconds, shown in whole seconds like every v2 time, and
always after its previous change), so ``?updated_since=...&sort_by=update_time`` lists it again with its new
values. Its persons' ``update_time`` does not move: in Pipedrive a person's changes only when the person does,
so a client that reads organization fields through persons must read the persons of changed organizations
again (``GET /api/v2/persons?org_id=``). Tests make the same change with
:meth:`V2Organizations.edit_organization`.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .pipedrive_base import PAGING
from .pipedrive_changes import PersonChanges
from .pipedrive_fields import CustomField, check_value
from .pipedrive_records import Organization, OrganizationEdits
from .pipedrive_v2 import READ_OPTIONS, Keyed
from .pipedrive_wire import is_number, page_of, rfc3339
from .server import Request, route

ORGANIZATION_INCLUDES = ("next_activity_id", "last_activity_id", "open_deals_count", "related_open_deals_count",
                         "closed_deals_count", "related_closed_deals_count", "email_messages_count", "people_count",
                         "activities_count", "done_activities_count", "undone_activities_count", "files_count",
                         "notes_count", "followers_count", "won_deals_count", "related_won_deals_count",
                         "lost_deals_count", "related_lost_deals_count", "smart_bcc_email")
ORGANIZATION_WRITABLE = frozenset({"name", "owner_id", "visible_to", "label_ids", "address", "custom_fields"})


class V2Organizations(PersonChanges):
    """``/api/v2/organizations``, and organizations changed by tests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.organizations = OrganizationEdits(self.crm)

    @route("GET", "/api/v2/organizations", name="organizations.list")
    def list_organizations(self, request: Request):
        self.check_params(request, PAGING | READ_OPTIONS | {"ids", "owner_id"})
        query = self.list_query(request, ("id", "update_time", "add_time"))
        keys, labels = self.custom_keys_arg(request, self.org_fields), self.labels_args(request)
        self.include_arg(request, (), ORGANIZATION_INCLUDES)
        owner, ids = self.int_arg(request, "owner_id"), self.ids_arg(request)
        count = self.crm.tenant.companies
        candidates: Iterable[int] = range(1, count + 1) if ids is None else sorted({i for i in ids if 1 <= i <= count})
        orgs = (self.organizations.get(org_id) for org_id in candidates)
        wanted = [o for o in orgs if o is not None and (owner is None or o.owner_id == owner)
                  and query.in_window(o.update_ms)]
        if query.sort_by == "id":
            keyed: Keyed = (((o.id, o.id), o) for o in wanted)
            keyed = keyed if query.direction == "asc" else iter(query.ordered(list(keyed)))
        else:
            field = "update_ms" if query.sort_by == "update_time" else "add_ms"
            keyed = iter(query.ordered([((getattr(o, field), o.id), o) for o in wanted]))
        found, last = page_of(keyed, query)
        return self.listing([self.organization(o, keys, labels) for o in found], query, last)

    @route("GET", "/api/v2/organizations/{id}", name="organizations.get")
    def get_organization(self, request: Request):
        self.check_params(request, READ_OPTIONS)
        keys, labels = self.custom_keys_arg(request, self.org_fields), self.labels_args(request)
        self.include_arg(request, (), ORGANIZATION_INCLUDES)
        return {"success": True, "data": self.organization(self._found(request.params["id"]), keys, labels)}

    @route("PATCH", "/api/v2/organizations/{id}", name="organizations.update")
    def update_organization(self, request: Request):
        org_id = request.params["id"]
        if not org_id.isdigit():
            raise self.error(400, f"id must be an integer, got {org_id!r}")
        self._found(org_id)
        return {"success": True, "data": self.organization(self._change(int(org_id), request.json()))}

    def _found(self, org_id: str | int) -> Organization:
        found = self.organizations.get(int(org_id)) if str(org_id).isdigit() else None
        if found is None:
            raise self.error(404, "Organization not found")
        return found

    def organization(self, org: Organization, keys: list[str] | None = None, labels: bool = False) -> dict:
        """One organization in the v2 shape."""
        return {"id": org.id, "name": org.name, "owner_id": org.owner_id, "add_time": rfc3339(org.add_ms),
                "update_time": rfc3339(org.update_ms), "is_deleted": False, "visible_to": org.visible_to,
                "address": None if org.address is None else dict(org.address),
                "label_ids": list(org.label_ids), "picture_id": None,
                "custom_fields": self.custom_values(self.org_fields, org.custom, list(self.org_fields.custom)
                                                    if keys is None else keys, labels)}

    # -- changes -----------------------------------------------------------------------------------------

    def edit_organization(self, org_id: int, **values: Any) -> int:
        """Change organization ``org_id`` now, as a user would in the app; returns when (ms).

        ``values`` by the field's display name (``Industry="Software"``, ``**{"Number of employees": 250}``) or
        ``name=``: an option by its label, a monetary field by its amount in USD or as ``{value, currency}``,
        any other value as the v2 PATCH takes it. The organization's persons keep their update time.

        :raises VendorError: 404 when there is no organization ``org_id``; 400 for a name that is no
            organization field, or a value the field refuses (as the PATCH answers them).
        """
        self._found(org_id)
        body: dict[str, Any] = {"name": values.pop("name")} if "name" in values else {}
        fields = {field_.name: field_ for field_ in list(self.org_fields.custom.values())}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise self.error(400, f"Organization {org_id}: no organization field is called {', '.join(unknown)}; "
                                  f"give name= or one of {', '.join(sorted(fields))}")
        if values:
            body["custom_fields"] = {fields[n].key: wire_value(fields[n], value) for n, value in values.items()}
        return self._change(org_id, body).update_ms

    def _change(self, org_id: int, body: Any) -> Organization:
        """Apply a PATCH body to an existing organization now."""
        changes, custom = self._organization_write(body)
        return self.organizations.edit(org_id, changes, custom, self.crm.clock_ms())

    def _organization_write(self, body: Any) -> tuple[dict, dict]:
        """The standard fields and the custom values (by store key) a PATCH body sets; 400 naming the first bad
        field."""
        body = self.write_body(body, ORGANIZATION_WRITABLE)
        checks = {"name": self.checked_name, "owner_id": self.checked_owner, "visible_to": self.checked_visibility,
                  "label_ids": lambda value: tuple(self.checked_label_ids(value)), "address": self._checked_address}
        changes = {key: checks[key](value) for key, value in body.items() if key in checks}
        custom = self.write_custom(self.org_fields, body["custom_fields"]) if "custom_fields" in body else {}
        return changes, custom

    def _checked_address(self, value: Any) -> dict | None:
        if value is None:
            return None
        try:
            return check_value("address", value, self.refs())
        except ValueError as exc:
            raise self.error(400, f"Invalid value for address: {exc}") from None


def wire_value(field_: CustomField, value: Any) -> Any:
    """A test's value of a custom field as the v2 PATCH takes it: options by label, money in USD by amount."""
    labels = {option.label: option.id for option in field_.options}
    if field_.field_type == "enum":
        return labels.get(value, value) if isinstance(value, str) else value
    if field_.field_type == "set" and isinstance(value, list):
        return [labels.get(item, item) if isinstance(item, str) else item for item in value]
    if field_.field_type == "monetary" and is_number(value):
        return {"value": value, "currency": "USD"}
    return value
