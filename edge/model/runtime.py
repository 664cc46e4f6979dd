"""Find a TFLite interpreter: ai-edge-litert first, then the older packages.

Why this order: ``ai-edge-litert`` is the maintained successor of
``tflite-runtime`` and has wheels for 64-bit Raspberry Pi OS (Bookworm,
Python 3.11; Trixie, Python 3.13).  ``tflite-runtime`` 2.14 (2023, its last
release) is the only choice on 32-bit Pi OS and needs numpy 1.x.  Full
TensorFlow works too but is a 280 MB install, so it comes last; it is only
here so that a training machine can evaluate without a second runtime.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


class RuntimeMissingError(ImportError):
    """No TFLite interpreter package is installed."""


def interpreter_class() -> tuple[Any, str]:
    """Return ``(Interpreter class, package name)`` of the first runtime found."""
    for package, module in CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        _LOGGER.debug("using TFLite runtime %s", package)
        return mod.Interpreter, package
    names = ", ".join(p for p, _ in CANDIDATES)
    raise RuntimeMissingError(f"no TFLite runtime installed: install one of {names} (pip install 'auricle[edge]')")


def runtime_version(package: str) -> str:
    """Installed version of a runtime package, or 'unknown'."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
