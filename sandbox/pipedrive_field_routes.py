"""Person and organization field definitions, v2 (``/api/v2/personFields``...) and v1 (``/v1/personFields``).

v2 names a field by its ``field_code`` (the 40-character key of a custom field) and gives
``{field_name, field_code, field_type, options, subfields, is_custom_field, is_optional_response_field}``
(``ui_visibility``, ``important_fields``, ``required_fields`` when asked by ``include_fields``). A field
is created with ``{field_name, field_type, options: [{label}]}`` (options required for enum and set);
``PATCH`` changes its name or visibility (never its code or type); options are added, relabelled and
deleted in bulk at ``/options``, all or none. v1 lists ``{id, key, name, field_type, options...}``, creates
with ``{name, field_type, options}`` and replaces options with ``PUT /v1/personFields/{id}``, whose
``options`` must list every option to keep (existing ones by id) and the new ones by label.
"""
from __future__ import annotations

from typing import Any

from .pipedrive_activities import V2Activities
from .pipedrive_fields import CREATABLE_TYPES, INCLUDE_NAMESPACES, OPTION_TYPES, CustomField, FieldCatalogue
from .pipedrive_wire import LIST_DEFAULT, LIST_MAX, ListQuery, decode_cursor, encode_cursor, page_of
from .server import Request, route

INCLUDE_VALUES = tuple(",".join(INCLUDE_NAMESPACES[i] for i in range(3) if mask >> i & 1) for mask in range(1, 8))
"""The ``include_fields`` values the v2 field endpoints document (combinations in this order)."""
UI_KEYS = frozenset({"add_visible_flag", "details_visible_flag"})


class FieldRoutes(V2Activities):
    """The field endpoints, on top of the records and activities."""

    # -- v2 --------------------------------------------------------------------------------------------

    @route("GET", "/api/v2/personFields", name="personFields.list")
    def list_person_fields_v2(self, request: Request):
        return self._list_fields(request, self.fields)

    @route("GET", "/api/v2/organizationFields", name="organizationFields.list")
    def list_organization_fields_v2(self, request: Request):
        return self._list_fields(request, self.org_fields)

    @route("GET", "/api/v2/personFields/{field_code}", name="personFields.get")
    def get_person_field_v2(self, request: Request):
        return self._get_field(request, self.fields)

    @route("GET", "/api/v2/organizationFields/{field_code}", name="organizationFields.get")
    def get_organization_field_v2(self, request: Request):
        return self._get_field(request, self.org_fields)

    @route("POST", "/api/v2/personFields", name="personFields.create")
    def create_person_field_v2(self, request: Request):
        body = self._body(request)
        unknown = sorted(set(body) - {"field_name", "field_type", "options", "ui_visibility", "important_fields",
                                      "required_fields"})
        if unknown:
            raise self.error(400, f"Unknown fields: {', '.join(unknown)}")
        labels = self._labels(body.get("options"), body.get("field_type"))
        made = self.fields.create(self._name(body, "field_name"), body["field_type"], labels, self.crm.clock_ms(),
                                  self._ui(body.get("ui_visibility")))
        return {"success": True, "data": made.describe_v2()}

    @route("PATCH", "/api/v2/personFields/{field_code}", name="personFields.update")
    def update_person_field_v2(self, request: Request):
        field_ = self._custom(request)
        body = self._body(request)
        if not body or set(body) - {"field_name", "ui_visibility", "important_fields", "required_fields"}:
            raise self.error(400, "Give at least one of field_name, ui_visibility, important_fields, required_fields; "
                                  "field_code and field_type cannot be changed")
        name = self._name(body, "field_name") if "field_name" in body else None
        updated = self.fields.update(field_.key, name, self._ui(body.get("ui_visibility")))
        return {"success": True, "data": updated.describe_v2()}

    @route("POST", "/api/v2/personFields/{field_code}/options", name="personFields.options.add")
    def add_person_field_options(self, request: Request):
        field_ = self._option_field(request)
        items = self._option_items(request, {"label"})
        added = self.fields.add_options(field_.key, [self._label(item) for item in items])
        return {"success": True, "data": [{"id": o.id, "label": o.label} for o in added], "additional_data": None}

    @route("PATCH", "/api/v2/personFields/{field_code}/options", name="personFields.options.update")
    def update_person_field_options(self, request: Request):
        field_ = self._option_field(request)
        items = self._option_items(request, {"id", "label"})
        self._known_ids(field_, items)
        updated = self.fields.relabel_options(field_.key, {item["id"]: self._label(item) for item in items})
        return {"success": True, "data": [{"id": o.id, "label": o.label} for o in updated], "additional_data": None}

    @route("DELETE", "/api/v2/personFields/{field_code}/options", name="personFields.options.delete")
    def delete_person_field_options(self, request: Request):
        field_ = self._option_field(request)
        items = self._option_items(request, {"id"})
        self._known_ids(field_, items)
        deleted = self.fields.delete_options(field_.key, {item["id"] for item in items})
        return {"success": True, "data": [{"id": o.id, "label": o.label} for o in deleted], "additional_data": None}

    def _list_fields(self, request: Request, catalogue: FieldCatalogue) -> dict:
        self.check_params(request, {"include_fields", "limit", "cursor"})
        include = self._include(request)
        limit = self.int_arg(request, "limit") or LIST_DEFAULT
        if not 1 <= limit <= LIST_MAX:
            raise self.error(400, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        cursor = request.arg("cursor")
        try:
            after = decode_cursor(cursor, "id", "asc") if cursor else None
        except ValueError as exc:
            raise self.error(400, f"Invalid parameter: {exc}") from None
        query = ListQuery(limit, "id", "asc", after, None, None)
        described = catalogue.describe_v2(include)
        page, last = page_of((((k, k), item) for k, item in enumerate(described)), query)
        next_cursor = encode_cursor("id", "asc", last, last[0]) if last else None
        return {"success": True, "data": page, "additional_data": {"next_cursor": next_cursor}}

    def _get_field(self, request: Request, catalogue: FieldCatalogue) -> dict:
        self.check_params(request, {"include_fields"})
        include = self._include(request)
        code = request.params["field_code"]
        found = next((f for f in catalogue.describe_v2(include) if f["field_code"] == code), None)
        if found is None:
            raise self.error(404, f"Field {code!r} not found")
        return {"success": True, "data": found}

    def _include(self, request: Request) -> list[str]:
        raw = request.arg("include_fields")
        if raw is not None and raw not in INCLUDE_VALUES:
            raise self.error(400, f"include_fields must be one of {', '.join(INCLUDE_VALUES)}")
        return raw.split(",") if raw else []

    def _custom(self, request: Request) -> CustomField:
        field_ = self.fields.custom.get(request.params["field_code"])
        if field_ is None:
            raise self.error(404, f"Custom field {request.params['field_code']!r} not found")
        return field_

    def _option_field(self, request: Request) -> CustomField:
        field_ = self._custom(request)
        if field_.field_type not in OPTION_TYPES:
            raise self.error(400, f"Field {field_.name!r} is of type {field_.field_type}: only enum and set fields "
                                  "have options")
        return field_

    def _option_items(self, request: Request, keys: set[str]) -> list[dict]:
        items = request.json()
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and set(i) == keys for i in items):
            raise self.error(400, f"Expected a non-empty array of {{{', '.join(sorted(keys))}}} objects")
        return items

    def _known_ids(self, field_: CustomField, items: list[dict]) -> None:
        ids = {o.id for o in field_.options}
        missing = [i["id"] for i in items if i["id"] not in ids]
        if missing:
            raise self.error(400, f"Option id(s) {missing} do not exist on field {field_.name!r}; nothing was changed")

    def _label(self, item: Any) -> str:
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise self.error(400, "Every option needs a non-empty label")
        return label.strip()

    def _labels(self, options: Any, field_type: Any) -> list[str]:
        if field_type not in CREATABLE_TYPES:
            raise self.error(400, f"field_type {field_type!r} is not one of {', '.join(CREATABLE_TYPES)}")
        if field_type in OPTION_TYPES and not options:
            raise self.error(400, f"A {field_type} field needs options [{{label}}]")
        if options is None:
            return []
        if not isinstance(options, list) or not all(isinstance(o, dict) and set(o) == {"label"} for o in options):
            raise self.error(400, "options must be an array of {label} objects")
        return [self._label(o) for o in options]

    def _name(self, body: dict, key: str) -> str:
        name = body.get(key)
        if not isinstance(name, str) or not name.strip():
            raise self.error(400, f"{key} is required")
        return name.strip()

    def _ui(self, ui: Any) -> dict:
        if ui is None:
            return {}
        if not isinstance(ui, dict) or not all(isinstance(v, bool) for k, v in ui.items() if k in UI_KEYS):
            raise self.error(400, "ui_visibility must be an object of boolean flags")
        return {k: v for k, v in ui.items() if k in UI_KEYS}

    def _body(self, request: Request) -> dict:
        body = request.json()
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")
        return body

    # -- v1 ----------------------------------------------------------------------------------------------

    @route("GET", "/v1/personFields", name="v1.personFields.list")
    def list_person_fields(self, request: Request):
        return self.v1_listing(request, self.fields.describe_v1())

    @route("GET", "/v1/personFields/{id}", name="v1.personFields.get")
    def get_person_field(self, request: Request):
        field_id = request.params["id"]
        found = next((f for f in self.fields.describe_v1() if str(f["id"]) == field_id), None)
        if found is None:
            raise self.error(404, "Field not found")
        return {"success": True, "data": found}

    @route("POST", "/v1/personFields", name="v1.personFields.create")
    def create_person_field(self, request: Request):
        body = self._body(request)
        labels = self._labels(body.get("options"), body.get("field_type"))
        made = self.fields.create(self._name(body, "name"), body["field_type"], labels, self.crm.clock_ms())
        return {"success": True, "data": made.describe_v1(len(self.fields.custom) + len(self.fields.standard) - 1)}

    @route("PUT", "/v1/personFields/{id}", name="v1.personFields.update")
    def update_person_field(self, request: Request):
        field_ = self.fields.by_id(int(request.params["id"])) if request.params["id"].isdigit() else None
        if field_ is None:
            raise self.error(404, "Field not found")
        body = self._body(request)
        if "options" in body:
            self._replace_options(field_, body["options"])
        updated = self.fields.update(field_.key, self._name(body, "name") if "name" in body else None)
        order = list(self.fields.custom).index(updated.key) + len(self.fields.standard)
        return {"success": True, "data": updated.describe_v1(order)}

    def _replace_options(self, field_: CustomField, options: Any) -> None:
        """v1's whole-array options: every option kept is listed by id, new ones by label, the rest deleted."""
        if field_.field_type not in OPTION_TYPES or not isinstance(options, list) or not options \
                or not all(isinstance(o, dict) and set(o) in ({"label"}, {"id", "label"}) for o in options):
            raise self.error(400, "options must be a non-empty array of {id, label} (kept) and {label} (new) objects "
                                  "on an enum or set field")
        kept = [o for o in options if "id" in o]
        self._known_ids(field_, kept)
        self.fields.relabel_options(field_.key, {o["id"]: self._label(o) for o in kept})
        self.fields.delete_options(field_.key, {o.id for o in field_.options} - {o["id"] for o in kept})
        self.fields.add_options(field_.key, [self._label(o) for o in options if "id" not in o])
