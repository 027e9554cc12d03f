"""The base of every model that validates a file a person wrote: unknown keys refused, errors said plainly.

Each refusal carries what was expected and what was found, so `leadpulse.core.config.files` can turn pydantic's
errors into ``"{path}: {key_path}: expected {expected}, found {found}"`` lines without guessing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

#: error type of every refusal raised by leadpulse's own validators
REFUSED = "leadpulse_refused"
#: error type of an unknown key; its context names the key and the keys allowed there
UNKNOWN_KEY = "leadpulse_unknown_key"


def refuse(expected: str, found: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error saying what the file should hold at this place and what it holds instead.

    `at` extends the key path below the place being validated, for checks that span a list (``("bands", 2, "min")``).
    """
    context = {"expected": expected, "found": found, "at": at}
    return PydanticCustomError(REFUSED, "expected {expected}, found {found}", context)


def show(value: Any) -> str:
    """A short, safe rendering of a value found in a file, for error messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class Strict(BaseModel):
    """A frozen model that refuses keys it does not declare, naming the keys it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = cls.accepted_keys()
            unknown = [key for key in data if key not in allowed]
            if unknown:
                raise PydanticCustomError(
                    UNKNOWN_KEY, "unknown key", {"keys": [str(k) for k in unknown], "allowed": sorted(allowed)}
                )
        return data

    @classmethod
    def accepted_keys(cls) -> set[str]:
        return {info.alias or name for name, info in cls.model_fields.items()}
