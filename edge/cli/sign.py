"""``auricle model sign``: sign a bundle, optionally as a new version, and write it atomically.

``--version X.Y.Z`` changes the manifest's version (nothing else: the model and self-test stay
byte for byte) so that a re-pushed bundle is a new version to the devices.  The result is
validated and its signature checked before anything is written; it goes to a temporary file
beside the target, is fsynced and renamed over it, so an interrupted or refused sign never
leaves a half-written or altered bundle behind.

Two targets are refused: a symbolic link (rewriting ``models/esc50.auricle`` would replace the
repository's link with a file while the daemon kept loading the package's model), and anything
inside the installed package, whose shipped model is part of the code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

from edge.model import bundle
from edge.model.bundle import MANIFEST, MODEL, SIGNATURE, BundleError

ZIP_TIME = (2020, 1, 1, 0, 0, 0)
"""Member time stamp: the same bundle and key give the same bytes."""


def register(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model sign`` to the ``model`` command group."""
    p = msub.add_parser("sign", help="sign a bundle with a private key (optionally as a new version)")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="private key (PEM)")
    p.add_argument("--version", metavar="X.Y.Z", help="write it as this version (a bundle devices will take again)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the signed bundle here (default: BUNDLE, in place)")
    p.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    source = Path(args.bundle)
    target = Path(args.output) if args.output else source
    refuse_unsafe_target(target)
    key = bundle.load_private_key(args.key)
    old = bundle.read_bundle(source)
    manifest = old.manifest_bytes if args.version is None else with_version(old.manifest_bytes, args.version, source)
    found = {MANIFEST: manifest, MODEL: old.model} | old.extras()
    found[SIGNATURE] = key.sign(manifest)
    data = zip_members(found)
    new = bundle.parse_bundle(data, str(target), public_key=key.public_key())  # never write what we would refuse
    write_atomically(target, data)
    was = "" if new.manifest.version == old.manifest.version else f" (was {old.manifest.version})"
    print(f"wrote {target}: {new.manifest.name} {new.manifest.version}{was}, signed with {args.key}")
    return 0


def refuse_unsafe_target(target: Path) -> None:
    """BundleError for a link, or a file inside the installed package (its shipped model)."""
    if target.is_symlink():
        raise BundleError(
            f"{target}: is a link (to {os.readlink(target)}); not rewritten: write the signed bundle elsewhere "
            "with -o OUT, e.g. -o signed.auricle"
        )
    package = Path(str(importlib.resources.files("edge"))).resolve()
    if target.resolve().is_relative_to(package):
        raise BundleError(f"{target}: is inside the installed package ({package}); write it elsewhere with -o OUT")


def with_version(manifest: bytes, version: str, source: Path) -> bytes:
    """The manifest bytes with ``version`` changed, in the canonical layout; checked."""
    data = json.loads(manifest)
    data["version"] = version
    changed = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    bundle.parse_manifest(changed, f"{source} with --version {version}")
    return changed


def zip_members(found: dict[str, bytes]) -> bytes:
    """A bundle's zip of ``found``, members in order, with fixed time stamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in found.items():
            info = zipfile.ZipInfo(member, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return out.getvalue()


def write_atomically(target: Path, data: bytes) -> None:
    """Temporary file beside ``target``, fsync, rename over it, fsync the folder; the mode of the old file."""
    folder = target.parent
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise BundleError(f"{target}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BundleError(f"{target}: cannot write: {exc.strerror or exc}") from None
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
