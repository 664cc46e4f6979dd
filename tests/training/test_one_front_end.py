"""One front end: training never re-implements the spectrogram (edge/features.py is the only one).

What the device may import is a contract in pyproject.toml ([tool.importlinter]), checked by
``lint-imports`` in deploy/test.sh."""

from __future__ import annotations

import re

from support.shared import ROOT


def test_training_has_no_spectrogram_code_of_its_own() -> None:
    suspicious = re.compile(r"np\.fft|\brfft\b|\bstft\b|melspectrogram|mel_filter|\bhann(ing)?\(|get_window|FrontEnd\(")
    hits = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in (ROOT / "training").rglob("*.py")
        for match in suspicious.finditer(path.read_text())
    ]
    assert hits == []
