"""What a person sees on stderr: every ``auricle`` command, run as a subprocess at the default log level,
prints no TFLite runtime chatter (``-v`` shows it in the debug log), and the daemon on a terminal says
what it runs once."""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.daemon import tone_wav, write_config
from support.ota import keypair
from support.shared import ROOT

from edge.daemon.startup import default_model_path

pytestmark = pytest.mark.integration
CHATTER = re.compile(r"TensorFlow|XNNPACK|delegate|^(INFO|VERBOSE|WARNING): ", re.M)
"""The runtime's own lines (untimestamped; our log lines start with the time)."""


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
"""The checkout under test, whatever the working folder."""


def _auricle(*args: str, cwd: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=ENV
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quiet")
    tone_wav(folder / "tone.wav")
    keypair(folder, "release")
    audio = {"source": "file", "file": str(folder / "tone.wav"), "realtime": False, "loop": False}
    write_config(folder / "file.yaml", {"model": {"state_dir": str(folder / "models")}, "audio": audio})
    return folder


SHIPPED = default_model_path()
COMMANDS = {
    "run --check": ["run", "--check"],
    "run": ["run", "--config", "file.yaml"],
    "classify": ["classify", "tone.wav"],
    "classify --events --json": ["classify", "--events", "--json", "tone.wav"],
    "model info": ["model", "info"],
    "model verify": ["model", "verify", SHIPPED],
    "model sign": ["model", "sign", SHIPPED, "--key", "release.key", "-o", "signed.auricle"],
    "model keygen": ["model", "keygen", "other"],
    "model push": ["model", "push", SHIPPED, "--broker", "127.0.0.1:1", "--device", "x", "--timeout", "1"],
    "devices": ["devices"],
    "record": ["record", "0.2", "out.wav"],
}


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_stderr_is_free_of_runtime_chatter(work: Path, argv: list[str]) -> None:
    done = _auricle(*argv, cwd=work)
    assert done.returncode in (0, 1, 2), done.stderr
    assert not CHATTER.search(done.stderr), done.stderr


def test_verbose_shows_the_chatter_in_the_debug_log(work: Path) -> None:
    done = _auricle("-v", "model", "info", cwd=work)
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stderr.splitlines() if "XNNPACK" in line]
    assert len(shown) == 1 and " DEBUG edge.model.runtime: runtime: INFO: Created TensorFlow Lite" in shown[0]


def test_only_the_runtimes_info_lines_are_held_back(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Its warnings and errors, and whatever else reaches fd 2 meanwhile, still reach stderr."""
    from edge.model import runtime

    caplog.set_level(logging.DEBUG, logger="edge.model.runtime")
    with runtime._chatter_to_debug_log():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: a real problem\n")
        print("a log line of another thread", file=sys.stderr)
    err = capfd.readouterr().err
    assert "ERROR: a real problem\n" in err and "a log line of another thread" in err
    assert "XNNPACK" not in err
    assert "runtime: INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in caplog.messages
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n", "fd 2 is back"


def _read_terminal(master: int, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Everything the process wrote to its terminal until it exits (bounded)."""
    out, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out.decode(errors="replace")


def test_the_daemon_on_a_terminal_says_what_it_runs_once(work: Path) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", "file.yaml"],
            stdout=slave,
            stderr=subprocess.PIPE,
            cwd=work,
            env=ENV,
        )
        os.close(slave)
        terminal = _read_terminal(master, proc, 60.0)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
    finally:
        os.close(master)
    assert terminal.count("listening with esc50 ") == 1, terminal
    assert "running:" not in stderr and not CHATTER.search(stderr), stderr
