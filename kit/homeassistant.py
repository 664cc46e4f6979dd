"""A real Home Assistant core on a broker, through the shared tool's scripts (tools/ha: setup.sh once, then
start.sh, stop.sh), and its REST API with the tool's long-lived token.

start.sh writes a fresh config folder (onboarded, the MQTT integration on the broker, discovery on) and
refuses to start a second HA on the same folder: each instance here has a folder of its own, so two test
runs on one machine do not meet.  HA runs detached (its own session); :meth:`HomeAssistant.stop` (stop.sh)
ends it by the pid start.sh wrote, SIGTERM and then SIGKILL after 60 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.process import Lifecycle

START_TIMEOUT_S = 240
"""start.sh's own bound (HA_START_TIMEOUT), on a busy machine; it takes 5-30 s."""


def ha_venv() -> Path:
    """Where setup.sh put Home Assistant (its ``$T/ha-venv``)."""
    if "HA_VENV" in os.environ:
        return Path(os.environ["HA_VENV"])
    return Path(os.environ.get("AURICLE_TMP") or tempfile.gettempdir()) / "ha-venv"


class HomeAssistant(Lifecycle):
    """One Home Assistant, started by ``with`` (or :meth:`start`) and stopped on leaving it."""

    def __init__(self, tools: Path, broker_port: int) -> None:
        self.tools = tools
        self.broker_port = broker_port
        self._dir = Path(tempfile.mkdtemp(prefix="auricle-ha-"))
        self.config_dir = self._dir / "config"
        self._env = os.environ | {"HA_CONFIG": str(self.config_dir), "HA_START_TIMEOUT": str(START_TIMEOUT_S)}
        self.url = ""
        self._token = ""

    @staticmethod
    def installed() -> bool:
        """True when setup.sh has been run on this machine."""
        return (ha_venv() / "bin" / "hass").is_file()

    def start(self) -> None:
        """start.sh: returns once HA runs with its MQTT client connected to the broker."""
        done = self._script("start.sh", str(self.broker_port), timeout_s=START_TIMEOUT_S + 30)
        if done.returncode != 0:
            raise RuntimeError(f"Home Assistant did not start:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.url = (self.config_dir / "url").read_text().strip()
        self._token = (self.config_dir / "token").read_text().strip()

    def stop(self) -> None:
        """stop.sh (bounded: SIGKILL after 60 s)."""
        if (self.config_dir / "ha.pid").exists():
            self._script("stop.sh", timeout_s=90)

    def _script(self, name: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.tools / name), *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def log_tail(self, limit: int = 4000) -> str:
        """The end of HA's log (for a failed assertion's message)."""
        try:
            return (self.config_dir / "home-assistant.log").read_text(errors="replace")[-limit:]
        except OSError as err:
            return f"<no log: {err}>"

    # -- the REST API --------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout_s: float = 15.0) -> Any:
        """One REST call with the token; the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        if not self.url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"Home Assistant is not started here (url {self.url!r})")
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (checked above)
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{method} {path}: {err.code} {err.read()[:500]!r}") from err
        return json.loads(raw) if raw else None

    def states(self, contains: str = "") -> list[dict[str, Any]]:
        """Every entity's state whose entity id contains ``contains``."""
        return [s for s in self.api("GET", "/api/states") if contains in s["entity_id"]]

    def wait_state(
        self, entity_prefix: str, contains: str, predicate: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        """The first state of an entity whose id starts with ``entity_prefix`` (``button.``) and contains
        ``contains`` that ``predicate`` accepts, polled; AssertionError with what was seen after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = [s for s in self.states(contains) if s["entity_id"].startswith(entity_prefix)]
            match = next((s for s in seen if predicate(s)), None)
            if match is not None:
                return match
            time.sleep(0.25)
        raise AssertionError(f"no {entity_prefix}*{contains}* as wanted within {timeout_s} s; seen: {seen}")

    def call(self, domain: str, service: str, data: dict[str, Any] | None = None) -> Any:
        """Call a service (``button.press``), as an automation or the UI does."""
        return self.api("POST", f"/api/services/{domain}/{service}", data or {})

    def fire(self, event_type: str, data: dict[str, Any]) -> None:
        """Fire an event on HA's bus (``mobile_app_notification_action``, as the Companion app does)."""
        self.api("POST", f"/api/events/{event_type}", data)

    # -- life cycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop HA and delete its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
