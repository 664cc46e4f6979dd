"""A recipe that states only its difference: ``extends: BASE.yaml`` in a training config.

The base (itself possibly extending another) is read first and the file's own keys are
merged over it: mappings key by key, anything else (a list, a number, a string) replaced
whole.  Relative paths resolve from the file that states them, so a base's paths are
rewritten relative to the extending file before the merge; the merged text is what the
run records (``config.yaml`` in the run folder, the bundle's provenance).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from edge.schema import ConfigError, read_text

EXTENDS = "extends"
PATH_KEYS = (
    ("data", "manifest"),
    ("data", "cache_dir"),
    ("data", "background", "*", "path"),
    ("data", "background", "*", "exclude_from"),
    ("data", "extra", "*", "manifest"),
    ("augment", "noise_dir"),
    ("model", "weights"),
    ("teacher", "path"),
    ("output",),
    ("bundle", "signing_key"),
    ("bundle", "path"),
    ("audioset", "confirm", "mapping"),
    ("audioset", "confirm", "class_map"),
)
"""Settings that name files, relative to the config's folder (``data.audio_root`` too, when there is no manifest)."""
NOT_PATHS = frozenset({"", "imagenet", "none"})


def merged_text(path: Path) -> str:
    """The config at ``path`` with its ``extends`` chain merged in, as YAML (paths relative to ``path``)."""
    data = _resolve(path.resolve(), ())
    chain = " <- ".join(p.name for p in _chain(path.resolve()))
    return f"# {chain}: merged by auricle-train (extends)\n" + yaml.safe_dump(data, sort_keys=False)


def extends(text: str) -> bool:
    """True when a config's text names a base (invalid YAML is left for the parser to report)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, Mapping) and EXTENDS in data


def _chain(path: Path) -> list[Path]:
    data = _read(path)
    parent = data.get(EXTENDS)
    return [path] if not isinstance(parent, str) else [path, *_chain((path.parent / parent).resolve())]


def _resolve(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{seen[-1].name}: {EXTENDS}: {path.name} extends itself (through {seen[0].name})")
    data = _read(path)
    parent = data.pop(EXTENDS, None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path.name}: {EXTENDS}: expected the path of a config file, got {parent!r}")
    base_path = (path.parent / parent).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path.name}: {EXTENDS}: {parent}: no such file")
    base = rebase(_resolve(base_path, (*seen, path)), base_path.parent, path.parent)
    return merge(base, data)


def _read(path: Path) -> dict[str, Any]:
    data = _load_text(read_text(path), path.name)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: <top>: expected a mapping, got {type(data).__name__}")
    return data


def _load_text(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merged key by key, other values replaced."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        out[key] = merge(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


def rebase(data: dict[str, Any], src: Path, dst: Path) -> dict[str, Any]:
    """``data`` with its relative paths (written from folder ``src``) rewritten relative to folder ``dst``."""
    keys = list(PATH_KEYS)
    data_section = data.get("data")
    if isinstance(data_section, Mapping) and not data_section.get("manifest"):
        keys.append(("data", "audio_root"))  # a class-folder tree, relative to the config
    out = data
    for key in keys:
        out = _rebase_at(out, key, src, dst)
    return out


def _rebase_at(node: Any, key: tuple[str, ...], src: Path, dst: Path) -> Any:
    if not key:
        return _rebased(node, src, dst)
    head, rest = key[0], key[1:]
    if head == "*":
        return [_rebase_at(item, rest, src, dst) for item in node] if isinstance(node, list) else node
    if not isinstance(node, Mapping) or head not in node:
        return node
    return {**node, head: _rebase_at(node[head], rest, src, dst)}


def _rebased(value: Any, src: Path, dst: Path) -> Any:
    if not isinstance(value, str) or value in NOT_PATHS or value.startswith("~") or Path(value).is_absolute():
        return value
    return os.path.relpath(src / value, dst)
