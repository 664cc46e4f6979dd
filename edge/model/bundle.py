"""The model bundle: one zip holding ``model.tflite``, ``manifest.json``,
optionally ``selftest.npz`` (a test window and the scores it must give, see
edge/model/selftest.py), optionally ``background.npz`` (embeddings of background audio for
teaching, edge/model/embedding.py) and optionally ``manifest.sig`` (ed25519 over the manifest
bytes; the manifest pins the sha256 of the model, the self-test and the background set, so the
signature covers them too).

Bundles are read into memory and checked member by member; nothing is ever
extracted to disk.  See docs/bundle.md for the format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.features import FeatureParams, InputSpec
from edge.learn.personal import TAUGHT_THRESHOLD
from edge.model.audioset import AudiosetHead
from edge.model.audioset import problems as audioset_problems
from edge.model.embedding import BACKGROUND, EmbeddingSpec
from edge.model.embedding import problems as embedding_problems
from edge.model.outputs import OutputSpec as OutputSpec  # home: outputs.py; still importable from here
from edge.schema import ConfigError, build, setting, to_data

SCHEMA_VERSION = 1
MANIFEST, MODEL, SIGNATURE, SELFTEST = "manifest.json", "model.tflite", "manifest.sig", "selftest.npz"
MAX_MEMBER_BYTES = 64 * 1024 * 1024
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
"""A semantic version: major, minor, patch and an optional pre-release; build metadata is ignored."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(ValueError):
    """A bundle was rejected; the message says why in one line."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What the device needs to run a model, and where the model came from."""

    schema_version: int
    name: str
    version: str
    """Semantic version of the model, e.g. '1.2.0'."""
    created: str
    """ISO 8601 time the bundle was made."""
    labels: tuple[str, ...]
    features: FeatureParams
    fingerprint: str
    """``features.fingerprint()`` at training time."""
    window_frames: int = setting(96, lo=1, hi=4096, unit="frames per inference window")
    hop_frames: int = setting(1, lo=1, hi=4096, unit="frames between inferences")
    input: InputSpec
    output: OutputSpec
    background_labels: tuple[str, ...] = ()
    """Outputs that stand for "none of the labels" (open-set training): scored by the model, never
    published as events, states or discovery entities (docs/bundle.md)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Default per-label decision thresholds (0..1)."""
    alert_labels: tuple[str, ...] = ()
    """The few labels worth announcing by default (Home Assistant entities enabled); () = none named
    (the key is left out of the JSON, so bundles without it are byte-identical to before)."""
    audioset: AudiosetHead | None = None
    """The second output (521 AudioSet scores): veto and optional labels (edge/model/audioset.py); None =
    a one-output model (the key is left out of the JSON, so bundles without it are byte-identical to before)."""
    embedding: EmbeddingSpec | None = None
    """The embedding output (edge/model/embedding.py); None = none (the key is left out of the JSON)."""
    taught: tuple[str, ...] = ()
    """Labels this device learned on the embedding (edge/learn/personal.py): never in a bundle's JSON, set only
    by :meth:`edge.model.classifier.Classifier.taught` on the device."""
    model_sha256: str
    selftest_sha256: str | None = None
    """sha256 of ``selftest.npz``; None = the bundle has no self-test (and the key is left out of the JSON)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        """Samples that make exactly one model window."""
        return self.features.frames_end(self.window_frames)

    @property
    def event_labels(self) -> tuple[str, ...]:
        """The labels that can raise events: every label but the background ones, in score order."""
        return tuple(x for x in self.labels if x not in self.background_labels)

    @property
    def score_labels(self) -> tuple[str, ...]:
        """The labels of the classifier's scores: the event labels, the AudioSet head's optional labels, then the
        labels this device was taught (:attr:`taught`)."""
        return self.event_labels + (self.audioset.names if self.audioset else ()) + self.taught

    @property
    def score_thresholds(self) -> dict[str, float]:
        """Default thresholds of :attr:`score_labels` (the optional labels' from the ``audioset`` section)."""
        taught = dict.fromkeys(self.taught, TAUGHT_THRESHOLD)
        return self.thresholds | (self.audioset.thresholds if self.audioset else {}) | taught

    def to_json(self) -> bytes:
        """Canonical manifest bytes (sorted keys, UTF-8); a bundle without a self-test reads as before."""
        data = to_data(self)
        data["features"] = self.features.to_dict()  # settings at their default left out: older readers accept it
        if data["selftest_sha256"] is None:
            del data["selftest_sha256"]
        if not data["alert_labels"]:
            del data["alert_labels"]
        if data["audioset"] is None:
            del data["audioset"]
        else:
            if data["audioset"]["evidence"] is None:
                del data["audioset"]["evidence"]  # bundles without it read and write as before
            confirm = data["audioset"]["confirm"]
            if confirm is not None and confirm["slope"] == 0 and confirm["keep_at"] == 1:
                del confirm["slope"], confirm["keep_at"]  # the hard gate reads and writes as before
        if data["embedding"] is None:
            del data["embedding"]
        del data["taught"]  # the device's, never the bundle's
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Bundle:
    """A validated bundle held in memory."""

    manifest: Manifest
    model: bytes
    manifest_bytes: bytes
    signature: bytes | None
    path: str
    selftest: bytes | None = None
    """``selftest.npz`` as stored (pinned by ``manifest.selftest_sha256``), or None."""
    background: bytes | None = None
    """``background.npz`` as stored (pinned by ``manifest.embedding.background_sha256``), or None."""

    def extras(self) -> dict[str, bytes]:
        """The pinned members beside the manifest and the model, by member name (to copy a bundle)."""
        found = {SELFTEST: self.selftest, BACKGROUND: self.background}
        return {k: v for k, v in found.items() if v is not None}


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_bundle(path: str | os.PathLike[str], public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Read and validate a bundle; raise :class:`BundleError` naming the reason."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"{name}: cannot read: {exc.strerror or exc}") from None
    return parse_bundle(raw, name, public_key)


def parse_bundle(raw: bytes, name: str, public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Validate bundle bytes held in memory (``name`` only labels the errors)."""
    return bundle_of(members(raw, name), name, public_key)


def bundle_of(found: dict[str, bytes], name: str, public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Validate the members :func:`members` returned: manifest, model, self-test, signature."""
    manifest_bytes, model = found[MANIFEST], found[MODEL]
    manifest = parse_manifest(manifest_bytes, name)
    check_model(manifest, model, name)
    selftest = found.get(SELFTEST)
    check_selftest(manifest, selftest, name)
    background = found.get(BACKGROUND)
    _check_pinned(BACKGROUND, manifest.embedding.background_sha256 if manifest.embedding else None, background, name)
    signature = found.get(SIGNATURE)
    if public_key is not None:
        check_signature(manifest_bytes, signature, (public_key,), name)
    return Bundle(manifest, model, manifest_bytes, signature, name, selftest, background)


def members(raw: bytes, name: str, max_total: int | None = None) -> dict[str, bytes]:
    """The members of a bundle's zip, after the checks that need no manifest (paths, names, sizes).

    ``max_total``: refuse more uncompressed bytes than this in all (a zip bomb from the network).
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise BundleError(f"{name}: not a bundle (not a zip file)") from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            member = info.filename
            if member.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", member) or ":" in member:
                raise BundleError(f"{name}: unsafe member path {member!r} (path traversal)")
        names = [i.filename for i in infos]
        extra = sorted(set(names) - {MANIFEST, MODEL, SIGNATURE, SELFTEST, BACKGROUND})
        if extra:
            raise BundleError(f"{name}: unexpected member(s) {', '.join(extra)}")
        if len(names) != len(set(names)):
            raise BundleError(f"{name}: duplicate members")
        for required in (MANIFEST, MODEL):
            if required not in names:
                raise BundleError(f"{name}: missing {required}")
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                raise BundleError(f"{name}: {info.filename} is too large ({info.file_size} bytes)")
        total = sum(i.file_size for i in infos)
        if max_total is not None and total > max_total:
            raise BundleError(f"{name}: {total} bytes uncompressed, over the {max_total} byte limit")
        try:
            return {n: zf.read(n) for n in names}
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
            raise BundleError(f"{name}: corrupt zip: {exc}") from None


def parse_manifest(data: bytes, name: str) -> Manifest:
    """Parse and check manifest bytes."""
    where = f"{name}: {MANIFEST}"
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{where}: expected a JSON object")
    if "taught" in obj:
        raise BundleError(f"{where}: 'taught' is the device's own labels, never a bundle's")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{where}: unknown schema_version {version!r} (this auricle reads {SCHEMA_VERSION})")
    try:
        manifest = build(Manifest, obj, where)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    _check_consistency(manifest, where)
    return manifest


def _check_consistency(m: Manifest, where: str) -> None:
    problems = []
    if not SEMVER.match(m.version):
        problems.append(f"version: expected semver like 1.0.0, got {m.version!r}")
    if not m.labels or len(set(m.labels)) != len(m.labels) or not all(m.labels):
        problems.append("labels: expected unique, non-empty names")
    if m.fingerprint != m.features.fingerprint():
        problems.append(
            f"features: parameters this front end cannot reproduce (fingerprint {m.fingerprint} "
            f"!= {m.features.fingerprint()})"
        )
    if (m.input.frames, m.input.bands) != (m.window_frames, m.features.n_bands):
        problems.append(
            f"input: shape {list(m.input.shape)} does not match window_frames={m.window_frames} "
            f"x n_bands={m.features.n_bands}"
        )
    stray = sorted(set(m.background_labels) - set(m.labels))
    if stray:
        problems.append(f"background_labels: not among the labels: {', '.join(stray)}")
    if len(set(m.background_labels)) >= len(set(m.labels)):
        problems.append("background_labels: at least one label must raise events")
    stray = sorted(set(m.alert_labels) - set(m.event_labels))
    if stray:
        problems.append(f"alert_labels: not among the event labels: {', '.join(stray)}")
    unknown = sorted(set(m.thresholds) - set(m.event_labels))
    if unknown:
        problems.append(f"thresholds: unknown label(s) {', '.join(unknown)}")
    bad = [k for k, v in m.thresholds.items() if not 0.0 <= v <= 1.0]
    if bad:
        problems.append(f"thresholds: expected numbers 0..1 for {', '.join(bad)}")
    if m.audioset is not None:
        problems.extend(audioset_problems(m.audioset, m.labels, m.event_labels))
    if m.embedding is not None:
        problems.extend(embedding_problems(m.embedding, m.labels, m.audioset is not None))
        if m.embedding.background_sha256 is not None and not _SHA256.match(m.embedding.background_sha256):
            problems.append("embedding.background_sha256: expected 64 lowercase hex digits")
    if not _SHA256.match(m.model_sha256):
        problems.append("model_sha256: expected 64 lowercase hex digits")
    if m.selftest_sha256 is not None and not _SHA256.match(m.selftest_sha256):
        problems.append("selftest_sha256: expected 64 lowercase hex digits")
    if problems:
        raise BundleError(f"{where}: {problems[0]}")


def check_model(manifest: Manifest, model: bytes, name: str) -> None:
    """The model bytes must be the ones the manifest pins, and look like TFLite."""
    if sha256(model) != manifest.model_sha256:
        raise BundleError(f"{name}: {MODEL} sha256 mismatch (corrupt or tampered)")
    if model[4:8] != b"TFL3":
        raise BundleError(f"{name}: {MODEL} is not a TFLite flatbuffer (no TFL3 magic)")


def check_selftest(manifest: Manifest, selftest: bytes | None, name: str) -> None:
    """A self-test member must be the one the manifest pins, and a pinned one must be there."""
    _check_pinned(SELFTEST, manifest.selftest_sha256, selftest, name)


def _check_pinned(member: str, pinned: str | None, data: bytes | None, name: str) -> None:
    if pinned is None:
        if data is not None:
            raise BundleError(f"{name}: {member} is not covered by the manifest (nothing pins it)")
        return
    if data is None:
        raise BundleError(f"{name}: missing {member} (the manifest pins one)")
    if sha256(data) != pinned:
        raise BundleError(f"{name}: {member} sha256 mismatch (corrupt or tampered)")


def check_signature(
    manifest_bytes: bytes,
    signature: bytes | None,
    keys: Sequence[Ed25519PublicKey],
    name: str,
    *,
    allow_unsigned: bool = False,
) -> None:
    """Raise unless ``signature`` is an ed25519 signature of the manifest by one of ``keys``: the one check for
    ``model.path`` (``model.public_key``) and for installs (edge/update/checks.py, with ``model.update_keys``).

    ``allow_unsigned`` (``model.allow_unsigned``) lets an unsigned bundle through, and a signed one when there
    is no key to check it with."""
    if signature is None or not keys:
        if allow_unsigned:
            return
        if signature is not None:
            raise BundleError(f"{name}: signed, but no public key is configured to check it (model.public_key)")
        why = "but a public key is configured" if keys else "and no public key is configured (model.public_key)"
        raise BundleError(f"{name}: unsigned, {why}")
    for key in keys:
        try:
            key.verify(signature, manifest_bytes)
            return
        except InvalidSignature:
            continue
    raise BundleError(f"{name}: bad signature (not signed by {'the' if len(keys) == 1 else 'a'} configured key)")


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key that orders semantic versions (pre-releases before their release)."""
    m = SEMVER.match(version)
    if m is None:
        return (0, 0, 0, 0, ())
    major, minor, patch, pre = m.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


def write_bundle(
    path: str | os.PathLike[str],
    manifest: Manifest,
    model: bytes,
    private_key: Ed25519PrivateKey | None = None,
    selftest: bytes | None = None,
    background: bytes | None = None,
) -> None:
    """Write a bundle atomically (temporary file, then rename); ``selftest``: ``selftest.npz`` bytes;
    ``background``: ``background.npz`` bytes (the manifest must have an ``embedding`` section)."""
    if manifest.model_sha256 != sha256(model):
        manifest = dataclasses.replace(manifest, model_sha256=sha256(model))
    pinned = None if selftest is None else sha256(selftest)
    if manifest.selftest_sha256 != pinned:
        manifest = dataclasses.replace(manifest, selftest_sha256=pinned)
    if manifest.embedding is not None:
        spec = dataclasses.replace(
            manifest.embedding, background_sha256=None if background is None else sha256(background)
        )
        manifest = dataclasses.replace(manifest, embedding=spec)
    elif background is not None:
        raise BundleError(f"{path}: a background set needs the manifest's embedding section")
    manifest_bytes = manifest.to_json()
    parse_manifest(manifest_bytes, str(path))  # never write what we would refuse to read
    check_model(manifest, model, str(path))
    found = {MANIFEST: manifest_bytes, MODEL: model}
    if selftest is not None:
        found[SELFTEST] = selftest
    if background is not None:
        found[BACKGROUND] = background
    if private_key is not None:
        found[SIGNATURE] = private_key.sign(manifest_bytes)
    _write_zip(Path(path), found)


def sign_bundle(path: str | os.PathLike[str], private_key: Ed25519PrivateKey) -> None:
    """Add (or replace) the signature of an existing, valid bundle."""
    bundle = read_bundle(path)
    found = {MANIFEST: bundle.manifest_bytes, MODEL: bundle.model} | bundle.extras()
    found[SIGNATURE] = private_key.sign(bundle.manifest_bytes)
    _write_zip(Path(path), found)


def _write_zip(path: Path, found: dict[str, bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in found.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(tmp, path)


def generate_keypair() -> tuple[bytes, bytes]:
    """A new ed25519 key pair as ``(private PEM, public PEM)``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an ed25519 private key (PEM); :class:`BundleError` if it is not one."""
    key = _load_key(path, serialization.load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load an ed25519 public key (PEM); :class:`BundleError` if it is not one."""
    key = _load_key(path, serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an ed25519 public key")
    return key


def _load_key(path: str | os.PathLike[str], loader: Any, **kwargs: Any) -> Any:
    try:
        return loader(Path(path).read_bytes(), **kwargs)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read key: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a PEM key: {exc}") from None
