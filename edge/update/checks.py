"""What a bundle must pass before it runs here: signature, validation, smoke test, version policy.

:func:`verify` is the part shared by installs and by every start-up (an
installed model is checked again before it is trusted); the install adds the
fit with the running daemon and the version policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.model import bundle as bundles
from edge.model.bundle import Bundle, BundleError, load_public_key, semver_key
from edge.model.classifier import Classifier
from edge.model.runtime import Kernels
from edge.model.selftest import SelfTestResult, parse_selftest, run_selftest
from edge.schema import setting
from edge.update.modelstore import Entry

UNZIP_FACTOR = 4
"""A bundle may hold at most this many times ``max_bytes`` uncompressed (models barely compress)."""


class Refused(Exception):
    """A request was refused; the message is the one-line reason."""


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """A model that passed its checks and is loaded, ready to classify."""

    bundle: Bundle
    classifier: Classifier
    sha256: str
    """sha256 of the bundle file."""
    origin: Literal["installed", "configured", "shipped"]
    entry: Entry | None = None
    """Its place in the state directory (None: the configured or shipped model)."""

    def describe(self) -> dict[str, Any]:
        """The model/state view of it."""
        m = self.bundle.manifest
        return {"name": m.name, "version": m.version, "sha256": self.sha256, "origin": self.origin}


@dataclass(frozen=True, kw_only=True)
class Policy:
    """What a bundle must satisfy to run here, and how installed models are kept: the settings of ``model.*``
    that updates use (the daemon's ``model`` section extends it, edge/daemon/config.py)."""

    public_key: str | None = setting(
        None, doc="ed25519 public key (PEM) that installs and model.path must be signed by (not the shipped model)"
    )
    update_keys: tuple[str, ...] = setting(
        (), doc="more ed25519 public keys (PEM) that may sign installed models, besides public_key"
    )
    allow_unsigned: bool = setting(False, doc="install unsigned bundles (testing only)")
    require_selftest: bool = setting(True, doc="refuse to install bundles without a self-test")
    threads: int = setting(1, lo=1, hi=16, unit="interpreter threads")
    kernels: Kernels = setting(
        "xnnpack",
        doc="int8 kernels: xnnpack (fastest) or builtin (about 3x the cost; the same scores on every runtime)",
    )
    latency_budget_ms: float = setting(100.0, lo=0.1, hi=60000.0, unit="ms per inference in the smoke test")
    probation_s: float = setting(
        300.0, lo=0.0, hi=86400.0, unit="s after a switch in which failures roll back on their own"
    )
    keep_versions: int = setting(3, lo=2, hi=100, unit="installed versions kept, active and previous included")
    max_bundle_mb: float = setting(16.0, lo=0.01, hi=64.0, unit="MB, largest bundle accepted")
    url_timeout_s: float = setting(30.0, lo=0.1, hi=3600.0, unit="s to download a bundle from a URL")

    @property
    def max_bytes(self) -> int:
        """``max_bundle_mb`` in bytes (a MB is 10^6 bytes)."""
        return int(self.max_bundle_mb * 1_000_000)

    def keys(self) -> tuple[Ed25519PublicKey, ...]:
        """The keys ``public_key`` and ``update_keys`` name, read from their files (BundleError for a bad one)."""
        paths = ([self.public_key] if self.public_key else []) + list(self.update_keys)
        return tuple(load_public_key(p) for p in paths)


def verify(raw: bytes, name: str, policy: Policy, *, budget_ms: float | None) -> tuple[Bundle, Classifier, str]:
    """Signature, full validation, interpreter, smoke test; the loaded model and a note on the smoke test.

    ``budget_ms`` None skips the latency check (at start-up the device is busy booting).
    """
    found = bundles.members(raw, name, max_total=UNZIP_FACTOR * policy.max_bytes)
    keys, signature = policy.keys(), found.get(bundles.SIGNATURE)
    bundles.check_signature(found[bundles.MANIFEST], signature, keys, name, allow_unsigned=policy.allow_unsigned)
    b = bundles.bundle_of(found, name)
    classifier = Classifier(b, threads=policy.threads, kernels=policy.kernels)
    if b.selftest is None and policy.require_selftest:
        raise BundleError(f"{name}: no self-test in the bundle (selftest.npz); it cannot be smoke-tested")
    test = None if b.selftest is None else parse_selftest(b.selftest, b.manifest, name)
    result = run_selftest(classifier, test, float("inf") if budget_ms is None else budget_ms)
    return b, classifier, _smoke_note(result, test is not None)


def _smoke_note(result: SelfTestResult, stored: bool) -> str:
    match = f", {result.describe()}" if stored else ", no stored scores"
    return f"smoke test {result.latency_ms:.1f} ms{match}"


def check_version(new: Bundle, running: Loaded | None, force: bool) -> None:
    """Older versions, and the same version with other contents, need ``force``."""
    if running is None or force:
        return
    old, version = running.bundle.manifest.version, new.manifest.version
    if semver_key(version) < semver_key(old):
        raise Refused(f"version {version} is older than the active {old} (send force to install it anyway)")
    if semver_key(version) == semver_key(old):
        raise Refused(f"version {version} is already active with other contents; bump the version (or force)")
