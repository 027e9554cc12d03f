"""A small OpenAPI schema check (required, type, enum, items, properties, $ref) for sandbox answers."""
import json
from pathlib import Path
from typing import Any

SPECS = Path("/work/shared/specs/hubspot")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}


def response_schema(spec_file: str, path: str, method: str, status: str) -> tuple[dict, dict]:
    spec = json.loads((SPECS / spec_file).read_text())
    content = spec["paths"][path][method]["responses"][status]["content"]
    return spec, next(iter(content.values()))["schema"]


def problems(spec: dict, schema: dict, value, where: str = "$") -> list[str]:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in schema:
            return problems(spec, schema[combined][0], value, where)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    expected: Any = _TYPES.get(schema.get("type", "object" if "properties" in schema else ""))
    if expected and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        return [f"{where}: expected {schema.get('type')}, got {type(value).__name__}"]
    found = [f"{where}: {value!r} not in enum" for _ in [0] if "enum" in schema and value not in schema["enum"]]
    if isinstance(value, dict):
        found += [f"{where}.{key}: missing" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
            if isinstance(sub, dict) and item is not None:
                found += problems(spec, sub, item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            found += problems(spec, schema["items"], item, f"{where}[{n}]")
    return found


def check(spec_file: str, path: str, method: str, status: str, body) -> None:
    spec, schema = response_schema(spec_file, path, method, status)
    found = problems(spec, schema, body)
    assert not found, found[:10]
