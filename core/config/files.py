"""Reading tenant files: one YAML file per tenant, refused with every fault it holds, or a valid `TenantConfig`.

Every refusal is a `ConfigError` whose message reads ``"{path}: {key_path}: expected {expected}, found {found}"``
(key paths dotted, list indexes in brackets: ``scoring.rules[2].points``). A file with several faults raises
`ConfigErrors`, one line per fault. Unknown keys are refused everywhere; the ``crm.connection`` block is checked
by the settings model its ``crm.kind`` registers (see `leadpulse.core.contract.settings_model`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import CrmSettings, settings_model
from leadpulse.core.errors import ConfigError, ConfigErrors, DuplicateTenant, UnknownConnector
from leadpulse.core.strict import REFUSED, UNKNOWN_KEY, show
from leadpulse.core.textfiles import first_undecodable


class _Loader(yaml.SafeLoader):
    """YAML with only true/false as booleans, so ``country: NO`` stays Norway."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable tenant file", exc.strerror or "it unreadable") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "(file)", "a UTF-8 text file (save it as UTF-8)",
                          f"{first_undecodable(path)} not UTF-8") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(path, "(document)", "a mapping with tenant, crm and scoring", "an empty file")
        _refuse_duplicate_keys(path, node, ())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(path, "(document)", "valid YAML", f"{getattr(exc, 'problem', None) or exc}{where}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(path: Path, node: yaml.Node, loc: tuple[str | int, ...]) -> None:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(path, item, (*loc, index))
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                found = f"{key!r} twice (again at line {key_node.start_mark.line + 1})"
                raise ConfigError(path, key_path(loc) or "(document)", "each key once", found)
            seen.add(key)
            _refuse_duplicate_keys(path, value_node, (*loc, key))


# ---------------------------------------------------------------- validating


def key_path(loc: tuple[str | int, ...]) -> str:
    """``("scoring", "rules", 2, "points")`` -> ``scoring.rules[2].points``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_EXPECTED = {
    "missing": "a value",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "text", "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "path_type": "a file path",
    "enum": "one of {expected}", "literal_error": "one of {expected}",
    "greater_than": "a number above {gt}", "greater_than_equal": "a number of at least {ge}",
    "less_than": "a number below {lt}", "less_than_equal": "a number of at most {le}",
    "string_pattern_mismatch": "text matching {pattern}", "string_too_short": "non-empty text",
    "too_short": "at least {min_length} item(s)", "too_long": "at most {max_length} item(s)",
}


def _translate(exc: ValidationError, path: Path, prefix: tuple[str | int, ...] = ()) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("@")))
        context = error.get("ctx") or {}
        if error["type"] == UNKNOWN_KEY:
            allowed = "one of " + ", ".join(context["allowed"])
            errors += [ConfigError(path, key_path((*loc, key)), allowed, f"unknown key {key!r}")
                       for key in context["keys"]]
        elif error["type"] == REFUSED:
            at = key_path(loc + tuple(context["at"]))
            errors.append(ConfigError(path, at, context["expected"], context["found"]))
        else:
            errors.append(_translate_builtin(error, loc, context, path))
    return errors


def _translate_builtin(error: Any, loc: tuple[str | int, ...], context: dict[str, Any], path: Path) -> ConfigError:
    is_key = bool(loc) and loc[-1] == "[key]"
    loc = loc[:-1] if is_key else loc
    template = _EXPECTED.get(error["type"])
    context = {name: show(value) if isinstance(value, float) else value for name, value in context.items()}
    expected = template.format(**context) if template else error["msg"].removeprefix("Value error, ").lower()
    if error["type"] == "enum" and "activity" in loc and isinstance(error["input"], str):
        expected += (" (the kinds every connector maps its activities onto; to match the CRM's own activity type, "
                     f"write vendor_type: {error['input']} instead of activity)")
    if is_key:
        expected = "a key that is " + expected
    secret = loc[:2] == ("crm", "secrets")
    if error["type"] == "missing":
        found = "nothing"
    else:  # a secret's value is never shown, only its type
        found = type(error["input"]).__name__ if secret else show(error["input"])
    return ConfigError(path, key_path(loc), expected, found)


def validate_tenant(data: Any, path: Path) -> TenantConfig:
    """A `TenantConfig` from an already parsed document (what `load_tenant` does after reading YAML).

    :raises ConfigError: (or `ConfigErrors`) for every fault found.
    """
    if not isinstance(data, dict):
        raise ConfigError(path, "(document)", "a mapping with tenant, crm and scoring", show(data))
    errors: list[ConfigError] = []
    tenant: TenantConfig | None = None
    try:
        tenant = TenantConfig.model_validate(data)
    except ValidationError as exc:
        errors += _translate(exc, path)
    crm = data.get("crm")
    settings = _validate_connection(crm, path, errors) if isinstance(crm, dict) else None
    _raise(errors)
    assert tenant is not None
    crm_config = tenant.crm.model_copy(update={"connection": settings})
    return tenant.model_copy(update={"crm": crm_config, "source_path": path})


def _validate_connection(crm: dict[str, Any], path: Path, errors: list[ConfigError]) -> CrmSettings | None:
    """The ``crm.connection`` block checked by the settings model of ``crm.kind``, and the secrets it needs."""
    kind = crm.get("kind")
    if not isinstance(kind, str):
        return None  # the tenant model reports it
    try:
        model = settings_model(kind)
    except UnknownConnector as exc:
        installed = str(exc).partition("installed: ")[2].rstrip(")")
        errors.append(ConfigError(path, "crm.kind", f"an installed CRM kind ({installed})", show(kind)))
        return None
    try:
        settings = model.model_validate(crm.get("connection") or {}, context={"base_dir": path.parent})
    except ValidationError as exc:
        errors += _translate(exc, path, ("crm", "connection"))
        return None
    secrets = crm.get("secrets")
    errors += _secret_names(kind, list(secrets) if isinstance(secrets, dict) else [], settings, path)
    return settings


def _secret_names(kind: str, given: list[str], settings: CrmSettings, path: Path) -> list[ConfigError]:
    errors = []
    known = settings.known_secrets
    for name in settings.needed_secrets():
        if name not in given:
            expected = f"a reference {{env: NAME}} or {{file: PATH}} ({kind} needs {name})"
            errors.append(ConfigError(path, f"crm.secrets.{name}", expected, "nothing"))
    for name in given:
        if name not in known:
            expected = f"one of {', '.join(known) or '(no secrets)'} for {kind}"
            errors.append(ConfigError(path, f"crm.secrets.{name}", expected, f"unknown secret {name!r}"))
    return errors


def _raise(errors: list[ConfigError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def load_tenant(path: Path) -> TenantConfig:
    """Read and validate one tenant file.

    :raises ConfigError: if the file cannot be read or is not valid; `ConfigErrors` when there are several faults.
    """
    path = Path(path)
    return validate_tenant(_read_yaml(path), path)


def load_config_dir(folder: Path) -> tuple[list[TenantConfig], list[ConfigError]]:
    """Every ``*.yaml`` / ``*.yml`` tenant file in `folder`; a bad file is reported and never stops the others.

    A tenant name used by two or more files is refused in all of them, with one `DuplicateTenant` naming every
    file: which of them holds the live rules is for a person to say, not for the order of file names.

    :raises ConfigError: if `folder` is not a folder.
    """
    if not Path(folder).is_dir():
        found = "a file" if Path(folder).exists() else "no such folder"
        raise ConfigError(folder, "(folder)", "a folder of tenant files (*.yaml); create it or pass --config-dir",
                          found)
    loaded: list[TenantConfig] = []
    errors: list[ConfigError] = []
    for path in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        try:
            loaded.append(load_tenant(path))
        except ConfigError as exc:
            errors.extend(exc.errors)
    kept, doubled = one_file_per_tenant(loaded)
    return kept, errors + doubled


def one_file_per_tenant(tenants: Sequence[TenantConfig]) -> tuple[list[TenantConfig], list[ConfigError]]:
    """`tenants` less those whose name two files of one folder give, each such name refused with one
    `DuplicateTenant` naming every file (files in different folders may hold two versions side by side)."""
    files: dict[tuple[str, Path], dict[Path, Path]] = {}
    for tenant in tenants:
        path = tenant.source_path
        files.setdefault((tenant.name, path.resolve().parent), {})[path.resolve()] = path
    doubled = {key: list(paths.values()) for key, paths in files.items() if len(paths) > 1}
    kept = [t for t in tenants if (t.name, t.source_path.resolve().parent) not in doubled]
    return kept, [DuplicateTenant(name, paths) for (name, _), paths in doubled.items()]
