"""Parameter values without pydantic, where nothing needs it.

Typer 0.29 turns every parameter's value into its annotated type with a pydantic
``TypeAdapter``, built when the parameter is first parsed: the root's ``--server`` alone
made every command import pydantic and build schemas, about 200 ms of CPU here, more than
the rest of a remote command's start (issue 19: under 300 ms). The annotations most
parameters have (``str``, ``bool``, an enum such as ``-o``'s, each possibly ``None``) are
taken here as they are; any other annotation, a custom parser, or a value this cannot take
(a misspelt choice: typer's error message) goes to typer's own coercion.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Any

from typer._coercion import RuntimeParam, build_runtime_param

_MISS = object()


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """``str``, ``bool`` or an enum (optionally ``| None``), else typer's coercion."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        taken = _plain(_without_none(self.annotation), value, self.parameter_info)
        if taken is not _MISS:
            return taken
        typer_own = build_runtime_param(param.type_descriptor)
        param._runtime_param = typer_own
        return typer_own._coerce_value(value, param=param, ctx=ctx)


def install() -> None:
    """Make typer give its parameters with a plain annotation (no custom parser, no file)
    the coercion above; the others keep typer's. Once per process."""
    from typer.core import _TyperParameter

    original = _TyperParameter.get_runtime_param
    if getattr(original, "plain_first", False):
        return

    def get_runtime_param(self: Any) -> RuntimeParam:
        if self._runtime_param is None and _takes_plain(self.type_descriptor):
            self._runtime_param = PlainRuntimeParam(
                parameter_info=self.type_descriptor.parameter_info,
                annotation=self.type_descriptor.annotation,
            )
        return original(self)

    get_runtime_param.plain_first = True  # type: ignore[attr-defined]
    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]


def _takes_plain(descriptor: Any) -> bool:
    info = descriptor.parameter_info
    return (
        descriptor.file_annotation is None
        and getattr(info, "parser", None) is None
        and getattr(info, "click_type", None) is None
        and _is_plain(_without_none(descriptor.annotation))
    )


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in {typing.Union, types.UnionType}:
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _is_plain(annotation: Any) -> bool:
    return annotation in {str, bool} or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    )


def _plain(annotation: Any, value: Any, info: Any) -> Any:
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str):
            folded = value if info.case_sensitive else value.casefold()
            for member in annotation:
                text = str(member.value)
                if (text if info.case_sensitive else text.casefold()) == folded:
                    return member
    return _MISS
