"""Architecture rules: the device never imports TensorFlow, librosa or training;
training never re-implements the front end."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_ON_DEVICE = ("tensorflow", "keras", "librosa", "training", "scipy", "matplotlib")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_edge_sources_import_nothing_from_the_desktop() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN_ON_DEVICE))
        for path in (ROOT / "edge").rglob("*.py")
    }
    # runtime.py names tensorflow.lite as a last-resort runtime, imported lazily by string.
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_edge_module_pulls_in_no_desktop_package() -> None:
    modules = sorted(f"edge.{p.stem}" for p in (ROOT / "edge").glob("*.py") if p.stem != "__main__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_ON_DEVICE!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_training_has_no_spectrogram_code_of_its_own() -> None:
    suspicious = re.compile(r"np\.fft|\brfft\b|\bstft\b|melspectrogram|mel_filter|\bhann(ing)?\(|get_window|FrontEnd\(")
    hits = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in (ROOT / "training").rglob("*.py")
        for match in suspicious.finditer(path.read_text())
    ]
    assert hits == []
