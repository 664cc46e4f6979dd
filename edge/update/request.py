"""Over-the-air commands as they arrive from the network: ``model/install`` and ``model/rollback``.

Anything can arrive, so these parsers take bytes and always return a
:class:`Request`; a malformed one carries its one-line ``problem`` and is
answered as refused without touching anything.  A binary payload is the
bundle itself and its request id is its sha256; a JSON payload names a URL
(``{"id", "url", "sha256", "force"}``) or carries the bundle inline
(``{"id", "bundle_b64", "force"}``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.model import bundle as bundles
from edge.update.fetch import FetchError, check_url

MAX_ID_CHARS = 64
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class Request:
    """One install or rollback command, as parsed from the network."""

    action: Literal["install", "rollback"]
    id: str
    payload: bytes | None = None
    """The bundle itself (binary message, or ``bundle_b64``)."""
    url: str | None = None
    sha256: str | None = None
    force: bool = False
    received: float = field(default_factory=time.time)
    problem: str | None = None
    """Set when the request itself is malformed: it is answered as refused."""


def parse_install(payload: bytes, received: float | None = None) -> Request:
    """A ``model/install`` payload: the bundle bytes, or JSON ``{"url", "sha256", "id", "force"}``."""
    now = received or time.time()
    if not payload.lstrip().startswith(b"{"):
        return Request(action="install", id=bundles.sha256(payload), payload=payload, received=now)
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        return Request(action="install", id="?", received=now, problem=f"install: not valid JSON: {exc}")
    try:
        return _json_install(data, now)
    except ValueError as exc:
        rid = data.get("id") if isinstance(data, dict) else None
        rid = rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS else "?"
        return Request(action="install", id=rid, received=now, problem=f"install: {exc}")


def _json_install(data: Any, now: float) -> Request:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    unknown = sorted(set(data) - {"id", "url", "sha256", "force", "bundle_b64"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(x if x.isprintable() else repr(x) for x in unknown)}")
    rid, url, sha, force = data.get("id"), data.get("url"), data.get("sha256"), data.get("force", False)
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_ID_CHARS:
        raise ValueError(f"id: expected a string of 1..{MAX_ID_CHARS} characters")
    if not isinstance(force, bool):
        raise ValueError("force: expected true or false")
    if "bundle_b64" in data:
        if url is not None:
            raise ValueError("give url or bundle_b64, not both")
        try:
            raw = base64.b64decode(str(data["bundle_b64"]), validate=True)
        except binascii.Error:
            raise ValueError("bundle_b64: not base64") from None
        return Request(action="install", id=rid, payload=raw, sha256=sha, force=force, received=now)
    if not isinstance(url, str):
        raise ValueError("url: expected a string (or give bundle_b64)")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise ValueError("sha256: expected 64 lowercase hex digits")
    try:
        check_url(url)
    except FetchError as exc:
        raise ValueError(str(exc)) from None
    return Request(action="install", id=rid, url=url, sha256=sha, force=force, received=now)


def parse_rollback(payload: bytes) -> Request:
    """A ``model/rollback`` payload: empty, or JSON ``{"id": ...}``."""
    if not payload.strip():
        return Request(action="rollback", id=f"rollback-{int(time.time())}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        rid = data.get("id") if isinstance(data, dict) else None
        if not isinstance(rid, str) or not 0 < len(rid) <= MAX_ID_CHARS or set(data) - {"id"}:
            raise ValueError(f'expected {{"id": "<1..{MAX_ID_CHARS} characters>"}}')
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        return Request(action="rollback", id="?", problem=f"rollback: {exc}")
    return Request(action="rollback", id=rid)


def parse_command(command: str, payload: bytes, *, retained: bool, max_bytes: int) -> Request | None:
    """A ``model/install`` or ``model/rollback`` message as a request; None for an empty install (a cleared retain)."""
    if command == "install" and not payload:
        return None
    # JSON may carry the bundle in base64 (4/3 as large); the bundle itself is measured again later
    limit = 2 * max_bytes if payload[:1] == b"{" else max_bytes
    if command == "install" and len(payload) > limit:
        too_large = f"bundle too large: {len(payload)} bytes, over the {max_bytes} byte limit"
        request = Request(action="install", id=bundles.sha256(payload), problem=too_large)
    else:
        request = parse_install(payload) if command == "install" else parse_rollback(payload)
    if retained:  # it would be carried out again on every reconnect
        problem = f"{command}: retained commands are ignored; publish without retain (and clear this one)"
        request = dataclasses.replace(request, problem=problem)
    return request


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
