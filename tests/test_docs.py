"""The docs tell the truth about the tree: every repository path and module they name exists, and every
experiment recipe's header names the recipe it extends.

Paths are read from the Markdown docs and from the comments, docstrings and strings of the code (a moved
file leaves its old name behind in both).  A path starts at a top-level folder of the repository
(``edge/daemon/slot.py``, ``tests/system/``); a dotted name at a package (``edge.daemon.config.Config``:
the module, then a name it defines).  ``docs/architecture.md`` also names modules by room
(``daemon/slot``): each is ``edge/<room>/<module>.py``.  training/ and tests/training/ are the training
package's own: their code is not read here (their Markdown is).
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support.shared import ROOT

TOP = ("edge", "training", "bench", "tests", "kit", "docs", "configs", "deploy", "systemd", "models")
PATH = re.compile(rf"(?<![\w./\\-])((?:{'|'.join(TOP)})/[\w./-]*)")
DOTTED = re.compile(r"(?<![\w./-])((?:edge|training|bench|kit|support)(?:\.\w+)+)")
ROOMS = ("audio", "model", "detect", "publish", "update", "daemon", "cli")
ROOM_MODULE = re.compile(rf"(?<![\w./-])(?:{'|'.join(ROOMS)})/\w+\b(?!/)")
TOPICS = {"model/state", "model/install", "model/rollback"}
"""MQTT topics (docs/ota.md), not modules of model/."""
PLACEHOLDER = re.compile(r"[A-Z]{3,}|\bx\b")
"""``configs/experiments/NAME.yaml``, ``bench.x``: a name for the reader to fill in."""
FILE_TYPES = {"md", "py", "yaml", "yml", "csv", "json", "sh", "txt", "toml", "wav", "npz", "auricle", "service"}
"""A dotted name ending in one of these is a file name (``training.md``), not a module."""
LOGGER = re.compile(r"getLogger\(\"[^\"]*\"\)")
EXPERIMENTS = ROOT / "configs" / "experiments"
NOT_READ = ("tests/training/",)


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in out.stdout.split() if (ROOT / name).is_file()]


DOCS = _tracked("*.md")
CODE = [
    p
    for p in _tracked("*.py", "*.sh", "*.toml", "*.yaml", "*.service")
    if not str(p.relative_to(ROOT)).startswith(NOT_READ)
]


@functools.cache
def _defined(module: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def _module_exists(dotted: str) -> bool:
    """``a.b.c.Name``: the longest prefix that is a module or package, then a name it defines (or a package's
    sub-folder)."""
    parts = dotted.split(".")
    base = ROOT / "tests" if parts[0] == "support" else ROOT
    for n in range(len(parts), 0, -1):
        stem = base.joinpath(*parts[:n])
        module = stem.with_suffix(".py") if stem.with_suffix(".py").is_file() else stem / "__init__.py"
        if module.is_file():
            rest = parts[n:]
            return not rest or rest[0] in _defined(module) or (stem / rest[0]).is_dir()
    return False


def _stale_in(path: Path) -> list[str]:
    text = LOGGER.sub("", path.read_text(encoding="utf-8", errors="replace"))
    stale = []
    for m in PATH.finditer(text):
        name = m.group(1).rstrip(".-")
        if text[m.end() : m.end() + 1] in ("\\", "*", "{") or PLACEHOLDER.search(name):
            continue  # a regular expression, a glob or a format string
        if not (ROOT / name).exists():
            stale.append(name)
    for name in DOTTED.findall(text):
        if name.rsplit(".", 1)[-1] in FILE_TYPES or PLACEHOLDER.search(name):
            continue
        if not _module_exists(name):
            stale.append(name)
    return stale


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    stale = _stale_in(doc)
    assert not stale, f"{doc.relative_to(ROOT)} names what is not in the tree: {stale}"


def test_every_path_the_code_names_exists() -> None:
    stale = {str(p.relative_to(ROOT)): s for p in CODE if (s := _stale_in(p))}
    assert not stale, f"comments, docstrings or strings name what is not in the tree: {stale}"


def test_the_architecture_names_real_modules_by_room() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(ROOM_MODULE.findall(text)) - TOPICS
    missing = sorted(m for m in named if not (ROOT / "edge" / f"{m}.py").is_file())
    assert not missing, f"docs/architecture.md names modules of rooms that do not exist: {missing}"


@pytest.mark.parametrize("recipe", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_an_experiment_says_what_it_extends(recipe: Path) -> None:
    text = recipe.read_text(encoding="utf-8")
    extends = (yaml.safe_load(text) or {}).get("extends")
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    said = re.findall(r"difference from (\S+?\.yaml)", header)
    assert said == ([extends] if extends else []), f"{recipe.name} extends {extends}; its header says {said}"
