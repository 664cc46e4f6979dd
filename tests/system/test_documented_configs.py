"""Every daemon config the documentation shows runs as written: ``auricle run --check --config`` exits 0.

The blocks are taken from the Markdown itself (every fenced ``yaml`` block whose top-level keys are
sections of the daemon's config), plus ``deploy/config.example.yaml``, which the service installer
copies and checks.  Files the docs tell a person to create first (``/etc/auricle/release.pub`` from
``auricle model keygen``) are made the way the docs say, under a temporary root: absolute paths
below ``/etc/auricle`` and ``/var/lib/auricle`` are the only thing rewritten.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.shared import ROOT

from edge.daemon.config import Config

pytestmark = pytest.mark.integration
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
SECTIONS = {f.name for f in dataclasses.fields(Config)}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```yaml\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
_ROOTS = ("/etc/auricle/", "/var/lib/auricle/")


def documented_configs(doc: str) -> list[str]:
    """The daemon configs among a Markdown file's yaml blocks, dedented, as written."""
    blocks = []
    for match in _FENCE.finditer((ROOT / doc).read_text(encoding="utf-8")):
        indent = len(match.group("indent"))
        text = "".join(line[indent:] for line in match.group("body").splitlines(keepends=True))
        try:
            data = yaml.safe_load(text)
        except yaml.constructor.ConstructorError:  # Home Assistant's own tags (a blueprint's !input): not ours
            continue
        if isinstance(data, dict) and data and set(data) <= SECTIONS:
            blocks.append(text)
    return blocks


CASES = [(f"{doc}#{i + 1}", text) for doc in DOCS for i, text in enumerate(documented_configs(doc))]


def test_the_docs_that_show_configs_are_found() -> None:
    found = {name.split("#")[0] for name, _ in CASES}
    assert {"docs/ota.md", "docs/daemon.md", "README.md", "docs/home-assistant.md"} <= found, found


def _auricle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


def _as_on_the_device(text: str, root: Path) -> str:
    """The config with the device's paths moved under ``root``; the key the docs install is made there."""
    keys = root / "desktop"
    keys.mkdir(exist_ok=True)
    made = _auricle("model", "keygen", "release", cwd=keys)
    assert made.returncode == 0, made.stderr
    etc = root / "etc" / "auricle"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "release.pub").write_bytes((keys / "release.pub").read_bytes())  # the walkthrough's `install`
    for prefix in _ROOTS:
        text = text.replace(prefix, f"{root}{prefix}")
    return text


@pytest.mark.parametrize(("name", "text"), CASES, ids=[name for name, _ in CASES])
def test_documented_config_runs_as_written(name: str, text: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(_as_on_the_device(text, tmp_path), encoding="utf-8")
    done = _auricle("run", "--check", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, f"{name}: exit {done.returncode}: {done.stderr.strip()}"
    assert done.stdout.startswith("config OK: model "), done.stdout


def test_the_example_config_the_installer_copies_runs(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(_as_on_the_device((ROOT / "deploy" / "config.example.yaml").read_text(), tmp_path))
    done = _auricle("run", "--check", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
