"""The TFLite loader imports its runtime by name, which the import contracts cannot see: it may try device
runtimes only, never a package the device must not import (pyproject.toml's contracts), and it is the one
import by name in edge/."""

from __future__ import annotations

import ast
import tomllib

import pytest
from support.shared import ROOT

from edge.model import runtime


def _forbidden_to_the_device() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {
        module
        for contract in contracts["contracts"]
        if contract["type"] == "forbidden" and "edge" in contract["source_modules"]
        for module in contract["forbidden_modules"]
    }


def test_the_loader_tries_device_runtimes_only() -> None:
    modules = [module for _, module in runtime.CANDIDATES]
    assert modules == ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"], "change the docs with it"
    forbidden = _forbidden_to_the_device()
    assert "tensorflow" in forbidden
    assert not [m for m in modules if m.split(".")[0] in forbidden]


def test_no_other_module_of_edge_imports_by_name() -> None:
    by_name = []
    for path in sorted((ROOT / "edge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if called in ("import_module", "__import__"):
                    by_name.append(str(path.relative_to(ROOT)))
    assert by_name == ["edge/model/runtime.py"]


def test_unknown_kernels_are_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"kernels must be one of xnnpack, builtin, got 'gpu'"):
        runtime.interpreter_class("gpu")
