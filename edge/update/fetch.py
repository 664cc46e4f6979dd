"""Download a bundle over HTTP(S) with a deadline, a size limit and a checksum; nothing else.

Only ``http`` and ``https`` URLs are opened (the opener has no file, FTP or
data handlers, so a redirect cannot lead anywhere else either); HTTPS checks
the server certificate against the system's CAs.  The body is read in chunks
into memory and never written to disk before its sha256 matches.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

CHUNK_BYTES = 64 * 1024
SCHEMES = ("http", "https")


class FetchError(Exception):
    """The download failed; the message says why in one line."""


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def check_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise FetchError(f"download: only http and https URLs are fetched, not {url[:80]!r}")


def fetch(url: str, *, sha256: str, max_bytes: int, timeout_s: float) -> bytes:
    """The body at ``url`` if it arrives within ``timeout_s``, is at most ``max_bytes`` and has ``sha256``."""
    check_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        with _opener().open(urllib.request.Request(url, method="GET"), timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"download: {int(length)} bytes, over the {max_bytes} byte limit")
            body = _read(response, max_bytes, deadline, timeout_s)
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"download: HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise FetchError(f"download: timed out after {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"download: timed out after {timeout_s:g} s") from None
        raise FetchError(f"download: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(f"download: {exc}") from None
    got = hashlib.sha256(body).hexdigest()
    if got != sha256:
        raise FetchError(f"download: sha256 mismatch (got {got[:16]}..., expected {sha256[:16]}...)")
    return body


def _read(response: http.client.HTTPResponse, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"download: timed out after {timeout_s:g} s")
        chunk = response.read(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"download: more than the {max_bytes} byte limit")
        chunks.append(chunk)
