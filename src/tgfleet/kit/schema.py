"""Base schemas: request bodies refuse unknown fields and values no database column can hold;
responses read from ORM objects.

What a request may carry is bounded here, once, rather than at each endpoint: every string
in a request body is free of C0 control characters other than tab, newline and carriage
return (PostgreSQL cannot store NUL; the others have no place in names, titles or comments),
every integer fits a signed 64-bit column, and every datetime with a zone stays within years
1 to 9999 once converted to UTC (the conversion the database layer makes). Query strings and
paths are screened for control characters by the application's input guard middleware;
integer and datetime query or path parameters use the `Int32`, `Int64` and `UtcDatetime`
types below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

#: C0 controls except tab, line feed and carriage return (which free text may carry).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
CONTROL_RULE = "control characters (U+0000 to U+001F other than tab, newline, carriage return)"


def control_character(text: str) -> str | None:
    """The first forbidden control character of ``text`` as ``U+XXXX``, or None."""
    found = CONTROL_CHARACTERS.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _datetime_problem(value: datetime) -> PydanticCustomError | None:
    if value.tzinfo is None:
        return None
    try:
        value.astimezone(UTC)
    except OverflowError:
        return PydanticCustomError(
            "datetime_out_of_range", "must lie within years 1 to 9999 once converted to UTC"
        )
    return None


def unstorable(value: object) -> PydanticCustomError | None:
    """Why ``value`` (a validated field value, walked through lists, tuples, sets, dicts and
    nested models) cannot be stored, or None. Secrets are not inspected: they are hashed or
    encrypted, never stored as text, and their content is not echoed."""
    if isinstance(value, str):
        char = control_character(value)
        if char is not None:
            return PydanticCustomError(
                "control_character",
                "must not contain {char} or other " + CONTROL_RULE,
                {"char": char},
            )
    elif isinstance(value, bool | SecretStr):
        return None
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return PydanticCustomError(
                "int_out_of_range",
                "must be between {min} and {max}",
                {"min": INT64_MIN, "max": INT64_MAX},
            )
    elif isinstance(value, datetime):
        return _datetime_problem(value)
    else:
        for item in _members(value):
            problem = unstorable(item)
            if problem is not None:
                return problem
    return None


def _members(value: object) -> Iterator[object]:
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield item
    elif isinstance(value, list | tuple | set | frozenset):
        yield from value


class Schema(BaseModel):
    """Response and internal schemas."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """Request bodies: unknown fields are an error, strings are stripped of edge blanks, and
    no field holds a value the database cannot store (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = unstorable(value)
        if problem is not None:
            raise problem
        return value


def _check_utc(value: datetime) -> datetime:
    problem = _datetime_problem(value)
    if problem is not None:
        raise problem
    return value


#: For query and path parameters (request bodies are bounded by `RequestSchema`).
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
#: An integer bound for a 32-bit ``Integer`` column (versions, counters).
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
#: A datetime that converts to UTC without leaving years 1 to 9999.
UtcDatetime = Annotated[datetime, AfterValidator(_check_utc)]


class ErrorBody(Schema):
    """Every error the API answers: a stable code and a message a user can act on."""

    error: str = Field(description="a stable, machine-readable code (not_found, conflict...)")
    detail: str = Field(description="what went wrong, in words")
