"""Over-the-air update tests: keys, signed and tampered bundles, daemon configs, ``model/state`` waits."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edge.model import bundle
from edge.model.bundle import Ed25519PrivateKey, load_private_key
from kit.broker import Message, Mosquitto, Subscriber
from support.daemon import write_config

FINAL = ("installed", "unchanged", "refused", "rolled_back", "failed", "interrupted")


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` and ``name.pub`` (ed25519 PEM) into ``folder``; return both paths."""
    private, public = bundle.generate_keypair()
    (folder / f"{name}.key").write_bytes(private)
    (folder / f"{name}.pub").write_bytes(public)
    return folder / f"{name}.key", folder / f"{name}.pub"


def members(path: Path | bytes) -> dict[str, bytes]:
    """The members of a bundle (file or bytes)."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    with zipfile.ZipFile(source) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(found: dict[str, bytes]) -> bytes:
    """Bundle bytes from members, as given (no checks)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in found.items():
            zf.writestr(name, data)
    return out.getvalue()


def resign(found: dict[str, bytes], key: Path | Ed25519PrivateKey) -> dict[str, bytes]:
    """Members with the manifest signed (again) by ``key``."""
    private = key if isinstance(key, Ed25519PrivateKey) else load_private_key(key)
    return found | {"manifest.sig": private.sign(found["manifest.json"])}


def edit_manifest(found: dict[str, bytes], change: Callable[[dict[str, Any]], None]) -> dict[str, bytes]:
    """Members with the manifest JSON changed by ``change`` (the signature is not touched)."""
    manifest = json.loads(found["manifest.json"])
    change(manifest)
    return found | {"manifest.json": json.dumps(manifest, indent=2, sort_keys=True).encode()}


def signed_copy(source: Path, target: Path, key: Path) -> Path:
    """A copy of ``source`` signed by ``key``."""
    target.write_bytes(source.read_bytes())
    bundle.sign_bundle(target, load_private_key(key))
    return target


def daemon_config(
    folder: Path, *, model: Path, clip: Path, broker: Mosquitto, pub: Path | None, **model_keys: Any
) -> tuple[Path, str]:
    """A daemon config replaying ``clip`` in real time in a loop, with a state directory; (config, device id)."""
    device = f"t{uuid.uuid4().hex[:8]}"
    data: dict[str, Any] = {
        "model": {
            "path": str(model),
            "public_key": str(pub) if pub else None,
            "state_dir": str(folder / "models"),
            "latency_budget_ms": 2000,
            **model_keys,
        },
        "audio": {"source": "file", "file": str(clip), "realtime": True, "loop": True},
        "events": {"hold_s": 0.2},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "device_id": device,
            "health_interval_s": 1,
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
            "scores": {"enabled": True, "top_k": 1, "max_rate_hz": 1000},
        },
    }
    return write_config(folder / f"{device}.yaml", data), device


def state(m: Message) -> dict[str, Any]:
    """A ``model/state`` payload."""
    data: dict[str, Any] = json.loads(m.payload)
    return data


def answer(sub: Subscriber, device: str, request_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The device's ``model/state`` once it has finished request ``request_id``."""

    def done(m: Message) -> bool:
        if m.topic != f"auricle/{device}/model/state":
            return False
        last = state(m).get("last") or {}
        return bool(last.get("id") == request_id and last.get("result") in FINAL)

    return state(sub.wait_for(done, timeout_s, f"model/state answer to {request_id[:16]}"))


class BundleServer:
    """A loopback HTTP server: ``/<name>`` serves registered bytes, ``/slow`` stalls, ``/big`` never ends early."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.stall_s = 5.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # the device hanging up (timeout, size limit) is the point of some requests
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._serve(self.path.lstrip("/"))

            def _serve(self, name: str) -> None:
                if name == "slow":
                    time.sleep(server.stall_s)
                if name == "big":
                    self.send_response(200)
                    self.end_headers()
                    for _ in range(64):  # 4 MiB without a Content-Length
                        self.wfile.write(b"\0" * 65536)
                    return
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        """The URL of ``name`` on this server."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
