"""Where the read-only shared material (ESC-50 clips, ImageNet weights, peers) lives.

It sits at ``../shared`` beside the checkout; a clone elsewhere (a CI temp dir)
finds it through ``AURICLE_SHARED`` or the workplace's fixed location.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``AURICLE_SHARED`` when set (alone: set it to a missing folder to test without shared material),
    else the first candidate that exists (the beside-the-checkout path when none does)."""
    forced = os.environ.get("AURICLE_SHARED")
    if forced:
        return Path(forced)
    candidates = [ROOT.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    return ROOT.parent / "shared"
