"""The older ai-edge-litert releases the tests compare against, in the venvs ``deploy/setup.sh dev`` builds
(no network in tests), and the check that each venv holds its release and not the main venv's."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.model.runtime import runtime_version
from support.shared import ROOT


@dataclass(frozen=True)
class OldRuntime:
    python: Path
    version: str

    def check(self) -> None:
        """Fail (never skip) when the venv is missing, holds another release, or the main venv's."""
        if not self.python.exists():
            pytest.fail(f"{self.python} missing: run deploy/setup.sh dev (ai-edge-litert=={self.version} there)")
        found = subprocess.run(
            [str(self.python), "-c", "from importlib.metadata import version; print(version('ai-edge-litert'))"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        assert found == self.version, f"{self.python}: ai-edge-litert {found}, not {self.version}"
        assert runtime_version("ai-edge-litert") != found, "the main venv must have the newest runtime"


COMPAT = OldRuntime(ROOT / ".venv-compat" / "bin" / "python", "2.1.3")
"""The oldest runtime whose XNNPACK kernels give the newest's events (tests/model/test_runtime_events.py)."""
OLDEST = OldRuntime(ROOT / ".venv-oldest" / "bin" / "python", "1.4.0")
"""The oldest supported runtime: the newest's scores on the builtin kernels."""
