"""Base schemas: request bodies refuse unknown fields; responses read from ORM objects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """Response and internal schemas."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """Request bodies: unknown fields are an error, strings are stripped of edge blanks."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorBody(Schema):
    error: str
    detail: str
