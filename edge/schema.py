"""Map plain YAML/JSON data onto nested frozen dataclasses, validated once.

Every setting is declared with :func:`setting`, which records its range and
unit next to its default.  :func:`build` walks a mapping, checks each key
against the dataclass fields and raises :class:`ConfigError` with a one-line
message naming the source, the key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """Bad configuration: the message is one line naming source and key path."""


def setting(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    unit: str = "",
    doc: str = "",
    aliases: tuple[str, ...] = (),
) -> Any:
    """Declare a dataclass field with a default, an inclusive range and a unit.

    ``aliases`` are older names of the key, still read (a renamed key keeps working)."""
    meta = {"lo": lo, "hi": hi, "unit": unit, "doc": doc, "aliases": aliases}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples or default_factory for container defaults")
    return dataclasses.field(default=default, metadata=meta)


def build(cls: type[T], data: Any, source: str, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping or None for defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {path or '<top>'}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = _resolve_aliases(data, fields, source, path)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown(source, path, key, fields))
    hints = get_type_hints(cls)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in data:
            expected = _expectation(hints[name], f)
            raise ConfigError(f"{source}: {_join(path, name)}: missing, expected {expected}")
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, fields[name], source, _join(path, name))
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # cross-field checks in __post_init__
        raise ConfigError(f"{source}: {path or '<top>'}: {exc}") from None


def _resolve_aliases(
    data: Mapping[Any, Any], fields: Mapping[str, dataclasses.Field[Any]], source: str, path: str
) -> dict[Any, Any]:
    """``data`` with every old key name replaced by the field's name."""
    old_names = {alias: name for name, f in fields.items() for alias in f.metadata.get("aliases", ())}
    out: dict[Any, Any] = {}
    for key, value in data.items():
        name = old_names.get(key, key)
        if name in out:
            raise ConfigError(f"{source}: {_join(path, name)}: given twice (as {name} and {key}); keep {name}")
        out[name] = value
    return out


def to_data(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain data that :func:`build` accepts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def describe(cls: type, path: str = "") -> list[tuple[str, Any, str]]:
    """List ``(key path, default, 'unit; range; doc')`` for every setting of ``cls``."""
    rows: list[tuple[str, Any, str]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe(hints[f.name], key))
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        rows.append((key, to_data(default), _expectation(hints[f.name], f)))
    return rows


def _join(path: str, name: str) -> str:
    """``path.name``; a name that would break the one-line error (a newline, a control character) is quoted."""
    shown = name if name.isprintable() else repr(name)
    return f"{path}.{shown}" if path else shown


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(source: str, path: str, key: Any, fields: Mapping[str, Any]) -> str:
    where = _join(path, str(key))
    close = difflib.get_close_matches(str(key), list(fields), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{source}: {where}: unknown key{hint}"


def _expectation(tp: Any, f: dataclasses.Field[Any] | None) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _expectation(inner[0], f) + " or null"
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a mapping of names to {_plural(args[1])}"
    name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    text = name.get(tp, getattr(tp, "__name__", str(tp)))
    meta = f.metadata if f is not None else {}
    lo, hi, unit = meta.get("lo"), meta.get("hi"), meta.get("unit")
    if lo is not None or hi is not None:
        text += f" {_num(lo)}..{_num(hi)}"
    if unit:
        text += f" ({unit})"
    return text


def _plural(tp: Any) -> str:
    names = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    return names.get(tp, _expectation(tp, None))


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else str(v)


def _convert(tp: Any, value: Any, f: dataclasses.Field[Any] | None, source: str, path: str) -> Any:
    if tp is Any:
        return value
    origin, args = get_origin(tp), get_args(tp)

    def fail() -> ConfigError:
        return ConfigError(f"{source}: {path}: expected {_expectation(tp, f)}, got {_show(value)}")

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, f, source, path)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, path)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise fail()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail()
        return tuple(_convert(args[0], v, None, source, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise fail()
        return {k: _convert(args[1], v, f, source, _join(path, str(k))) for k, v in value.items()}
    return _scalar(tp, value, f, fail)


def _scalar(tp: Any, value: Any, f: dataclasses.Field[Any] | None, fail: typing.Callable[[], ConfigError]) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise fail()
        value = float(value)
    else:
        raise TypeError(f"unsupported setting type {tp!r}")
    meta = f.metadata if f is not None else {}
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise fail()
    return value


def from_yaml(cls: type[T], text: str, source: str) -> T:
    """Parse YAML text (``yaml.safe_load``) and :func:`build` ``cls`` from it."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {_yaml_problem(exc)}") from None
    return build(cls, data, source)


def read_text(path: str | os.PathLike[str]) -> str:
    """A config file's text; :class:`ConfigError` naming the file if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"
