"""Find a TFLite interpreter: ai-edge-litert, else tflite-runtime.

Why this order: ``ai-edge-litert`` is the maintained successor of
``tflite-runtime`` and has wheels for 64-bit Raspberry Pi OS (Bookworm,
Python 3.11; Trixie, Python 3.13).  ``tflite-runtime`` 2.14 (2023, its last
release) is the only choice on 32-bit Pi OS and needs numpy 1.x.  Never
TensorFlow: the device does not have it, and a training machine has
ai-edge-litert anyway (``auricle[train]`` installs ``auricle[edge]``).

The runtime is imported by name (:data:`CANDIDATES`), which the import contracts cannot see;
tests/model/test_runtime.py checks that no candidate is a package the device must not import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import platform
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any, Literal, get_args

_LOGGER = logging.getLogger(__name__)

Kernels = Literal["xnnpack", "builtin"]
"""Which int8 kernels run the model (config ``model.kernels``).

``xnnpack``: the runtime's default, with its XNNPACK delegate (the fastest on x86 and ARM).  Its int8
results differ by a few output steps between releases (ai-edge-litert 1.4.0 against 2.3.0: up to 10 of
256 on esc50 5.0.0's label outputs, 2% of them), so a decision at a threshold can move by a hop; between
x86_64 and aarch64 on one release by one step on 0.05% of them.
``builtin``: TFLite's own kernels without the default delegates; their int8 results were the same bit for
bit on 1.4.0, 2.1.3 and 2.3.0 (tests/model/test_runtime_events.py; on aarch64, emulated as a Pi 4's and a
Pi 5's cores, 1.4.0 and 2.3.0 too), at about 3x the cost per inference, but differ between x86_64 and
aarch64 by up to 10 steps.
"""
KERNELS: tuple[str, ...] = get_args(Kernels)
_DESCRIBED = re.compile(r"(?P<package>\S+) (?P<release>\S+) on (?P<machine>\S+), (?P<kernels>\w+) kernels")

CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
"""(package, module) of each runtime, in the order tried."""


class RuntimeMissingError(ImportError):
    """No TFLite interpreter package is installed."""


def interpreter_class(kernels: Kernels = "xnnpack") -> tuple[Any, str]:
    """Return ``(Interpreter class, package name)`` of the first runtime found, running ``kernels``
    (:data:`KERNELS`).

    The class is the runtime's own with its start-up chatter quiet: the C++ runtime writes
    ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to file descriptor 2 when
    the first interpreter allocates its tensors, which no log level of ours can reach.  While an
    interpreter is created or allocates, fd 2 is held in a temporary file; then the runtime's
    ``INFO:`` lines go to this module's debug log (``auricle -v`` shows them) and everything else
    (its warnings and errors, and whatever another thread wrote meanwhile) goes on to stderr.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    for package, module in CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        _LOGGER.debug("using TFLite runtime %s, %s kernels", package, kernels)
        resolver = None if kernels == "xnnpack" else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return _quiet(mod.Interpreter, resolver), package
    names = ", ".join(p for p, _ in CANDIDATES)
    raise RuntimeMissingError(f"no TFLite runtime installed: install one of {names} (pip install 'auricle[edge]')")


_CHATTER = re.compile(rb"^(INFO|VERBOSE): ")
"""The runtime's informational lines (its warnings and errors are not chatter)."""
_HOLD = threading.RLock()
"""One hold of fd 2 at a time: two would restore each other's descriptors."""


@functools.cache
def _quiet(base: type, resolver: Any = None) -> type:
    """``base`` with :func:`_chatter_to_debug_log` around its construction and ``allocate_tensors``; built with
    op resolver ``resolver`` unless that is None (the runtime's default)."""

    class Quiet(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if resolver is not None:
                kwargs["experimental_op_resolver_type"] = resolver
            with _chatter_to_debug_log():
                super().__init__(*args, **kwargs)

        def allocate_tensors(self) -> Any:
            with _chatter_to_debug_log():
                return super().allocate_tensors()

    Quiet.__name__, Quiet.__qualname__, Quiet.__doc__ = base.__name__, base.__qualname__, base.__doc__
    return Quiet


@contextlib.contextmanager
def _chatter_to_debug_log() -> Iterator[None]:
    """Hold fd 2 in a temporary file; afterwards its chatter goes to the debug log, the rest to fd 2."""
    with _HOLD, tempfile.TemporaryFile() as held:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        _flush_stderr()
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            _pass_on(held.read())


def _pass_on(data: bytes) -> None:
    for line in data.splitlines(keepends=True):
        if _CHATTER.match(line):
            _LOGGER.debug("runtime: %s", line.decode(errors="replace").rstrip())
        else:
            os.write(2, line)


def _flush_stderr() -> None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()


def runtime_line(package: str, kernels: Kernels) -> str:
    """The runtime, its release, the machine and the kernels in one line, as ``auricle run --check``,
    ``model/state`` and ``auricle model push`` say them."""
    return f"{package} {runtime_version(package)} on {platform.machine()}, {kernels} kernels"


def same_arithmetic(described: str) -> str | None:
    """What devices must share to compute the same int8 outputs, from :func:`runtime_line`: the builtin
    kernels on one machine type, XNNPACK on one release and machine type (README "Supported platforms"); None
    for a line not in that form (an older daemon's)."""
    found = _DESCRIBED.fullmatch(described)
    if found is None:
        return None
    if found["kernels"] == "builtin":
        return f"builtin on {found['machine']}"
    return f"{found['package']} {found['release']} xnnpack on {found['machine']}"


def runtime_version(package: str) -> str:
    """Installed version of a runtime package, or 'unknown'."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
