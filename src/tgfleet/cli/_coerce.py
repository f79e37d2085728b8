"""Parameter values without pydantic, where nothing needs it.

Typer 0.29 turns every parameter's value into its annotated type with a pydantic
``TypeAdapter``, built when the parameter is first parsed: the root's ``--server`` alone
made every command import pydantic and build schemas, about 200 ms of CPU here, more than
the rest of a remote command's start (issue 19: under 300 ms). The annotations most
parameters have (``str``, ``bool``, ``int``, ``float``, an enum such as ``-o``'s, a list
of one of these, each possibly ``None``) are taken here; any other annotation, a custom
parser, or a value this cannot take as it is (a misspelt choice, a number out of its range:
typer's error message) goes to typer's own coercion.
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
    """A plain annotation's value (see the module), else typer's coercion."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        annotation = _without_none(self.annotation)
        if typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            if isinstance(value, list | tuple):
                items = [_plain(item, one, param) for one in value]
                if _MISS not in items:
                    return items
        else:
            taken = _plain(annotation, value, param)
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
    if typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        return len(args) == 1 and _is_plain(args[0])
    return annotation in {str, bool, int, float} or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    )


def _plain(annotation: Any, value: Any, param: Any) -> Any:
    info = param.type_descriptor.parameter_info
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation in {int, float}:
        return _number(annotation, value, param)
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


def _number(kind: Any, value: Any, param: Any) -> Any:
    """An int or float within the parameter's min and max; a value out of them (or
    clamped, or not a number) is typer's to handle."""
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int | float)
        or (kind is int and isinstance(value, float))
    ):
        return _MISS
    try:
        number = kind(value)
    except ValueError:
        return _MISS
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if (low is not None and number < low) or (high is not None and number > high):
        return _MISS
    return number
