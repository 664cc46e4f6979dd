"""``auricle model keygen|sign|verify|info``: look after bundles and keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge import bundle


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` command group."""
    model = sub.add_parser("model", help="inspect, sign and verify model bundles")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = msub.add_parser("keygen", help="make an ed25519 key pair for signing bundles")
    p.add_argument("prefix", help="writes PREFIX.key (private, mode 600) and PREFIX.pub")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(handler=_keygen)

    p = msub.add_parser("sign", help="sign a bundle with a private key")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="private key (PEM)")
    p.set_defaults(handler=_sign)

    p = msub.add_parser("verify", help="validate a bundle, and its signature with --pubkey")
    p.add_argument("bundle")
    p.add_argument("--pubkey", help="public key (PEM); the bundle must be signed by it")
    p.set_defaults(handler=_verify)

    p = msub.add_parser("info", help="show a bundle's labels, parameters and metrics")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_info)


def _keygen(args: argparse.Namespace) -> int:
    private_path, public_path = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    for path in (private_path, public_path):
        if path.exists() and not args.force:
            print(f"auricle: {path}: exists (use --force to overwrite)", file=sys.stderr)
            return 2
    private, public = bundle.generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public_path.write_bytes(public)
    print(f"wrote {private_path} (keep it secret, off the device) and {public_path}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    key = bundle.load_private_key(args.key)
    bundle.sign_bundle(args.bundle, key)
    print(f"signed {args.bundle}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    key = bundle.load_public_key(args.pubkey) if args.pubkey else None
    b = bundle.read_bundle(args.bundle, public_key=key)
    signed = "signature valid" if key else ("signed, not checked" if b.signature else "unsigned")
    print(f"{args.bundle}: OK ({b.manifest.name} {b.manifest.version}, {signed})")
    return 0


def _info(args: argparse.Namespace) -> int:
    b = bundle.read_bundle(args.bundle)
    if args.json:
        print(b.manifest_bytes.decode().rstrip())
        return 0
    print("\n".join(info_lines(b)))
    return 0


def info_lines(b: bundle.Bundle) -> list[str]:
    """Human-readable summary of a bundle."""
    m = b.manifest
    f = m.features
    hop_ms = m.hop_frames * f.hop_samples * 1000 / f.sample_rate
    window_s = ((m.window_frames - 1) * f.hop_samples + f.window_samples) / f.sample_rate
    lines = [
        f"{m.name} {m.version}  ({b.path}, {len(b.model) / 1024:.0f} KiB model, created {m.created})",
        f"  signature: {'present' if b.signature else 'none'}   sha256: {m.model_sha256[:16]}...",
        f"  input: {m.input.dtype} {list(m.input.shape)} ({m.input.channel_mode}), "
        f"window {window_s:.2f} s, hop {m.hop_frames} frames ({hop_ms:.0f} ms)",
        f"  features: {f.sample_rate} Hz, {f.n_bands} {f.scale} bands {f.f_min_hz:g}-{f.f_max_hz:g} Hz, "
        f"window/hop {f.window_samples}/{f.hop_samples} samples, fingerprint {m.fingerprint}",
        f"  labels ({len(m.labels)}): {', '.join(m.labels)}",
    ]
    if m.metrics:
        lines.append("  metrics:")
        lines.extend(f"    {k}: {_short(v)}" for k, v in m.metrics.items())
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else f"{value:.4g}"
    return text if len(text) <= 100 else text[:97] + "..."
