"""Plain JSON for frozen dataclasses and back: how positions, events and notifications are stored.

Generic on purpose (dataclasses, enums, Decimal, tuples, frozensets, dicts, optional fields), so the lifecycle
states its rules and this module alone knows the storage shape. Decimal travels as a string: no float rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for a position, an event or a notification (Decimal as string, enums as values)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, frozenset):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def from_jsonable(tp: Any, data: Any) -> Any:
    """The inverse of `to_jsonable` for a type: `from_jsonable(Position, row.lifecycle)`."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(tp) if arg is not type(None)]
        if data is None:
            return None
        if len(options) != 1:
            raise TypeError(f"cannot decode an untagged union {tp}")
        return from_jsonable(options[0], data)
    if origin is Literal or tp is Any:
        return data
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in data)
        return tuple(from_jsonable(arg, v) for arg, v in zip(args, data, strict=True))
    if origin is frozenset:
        item = get_args(tp)[0]
        return frozenset(from_jsonable(item, v) for v in data)
    if origin is dict:
        key_type, value_type = get_args(tp)
        return {from_jsonable(key_type, k): from_jsonable(value_type, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = dataclasses.fields(tp)
        return tp(**{f.name: from_jsonable(hints[f.name], data[f.name]) for f in fields if f.name in data})
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is Decimal:
        return Decimal(data)
    if tp is float:
        return float(data)
    return data
