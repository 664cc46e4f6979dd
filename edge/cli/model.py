"""``auricle model keygen|sign|verify|info``: look after bundles and keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge.model import bundle


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` command group."""
    model = sub.add_parser("model", help="inspect, sign and verify model bundles")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = msub.add_parser("keygen", help="make an ed25519 key pair for signing bundles")
    p.add_argument("prefix", help="writes PREFIX.key (private, mode 600) and PREFIX.pub")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(handler=_keygen)

    p = msub.add_parser("verify", help="validate a bundle, and its signature with --pubkey")
    p.add_argument("bundle")
    p.add_argument("--pubkey", help="public key (PEM); the bundle must be signed by it")
    p.set_defaults(handler=_verify)

    p = msub.add_parser("info", help="show a bundle's labels, thresholds, parameters and metrics")
    p.add_argument("bundle", nargs="?", help="bundle file (default: the active model, as the daemon picks it)")
    p.add_argument(
        "--config", "-c", metavar="FILE", help="daemon config (model.state_dir, model.path) that picks the active model"
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_info)

    from edge.cli import push, sign  # `model sign` and the OTA `model push` live in their own modules

    sign.register(msub)
    push.register(msub)


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


def _verify(args: argparse.Namespace) -> int:
    key = bundle.load_public_key(args.pubkey) if args.pubkey else None
    b = bundle.read_bundle(args.bundle, public_key=key)
    signed = "signature valid" if key else ("signed, not checked" if b.signature else "unsigned")
    print(f"{args.bundle}: OK ({b.manifest.name} {b.manifest.version}, {signed})")
    return 0


def _info(args: argparse.Namespace) -> int:
    b = bundle.read_bundle(args.bundle) if args.bundle else active_bundle(args.config)
    if args.json:
        print(b.manifest_bytes.decode().rstrip())
        return 0
    print("\n".join(bundle_lines(b)))
    return 0


def active_bundle(config_path: str | None) -> bundle.Bundle:
    """The bundle the daemon would start with: installed in ``model.state_dir``, else ``model.path``, else shipped."""
    from edge.daemon.config import load_config
    from edge.daemon.startup import starting_model_of

    start = starting_model_of(load_config(config_path))
    if start.model is None:
        raise bundle.BundleError(start.problem or "no usable model")
    return start.model.bundle


def _embedding_line(b: bundle.Bundle) -> str:
    """What the device can learn with: the embedding output and the bundle's background set, or why not."""
    spec = b.manifest.embedding
    if spec is None:
        return "  embedding: none (auricle teach needs a model with one: esc50 4.1.0 or later)"
    if b.background is None:
        return f"  embedding: {spec.size} values (auricle teach); no background set: negatives from this device only"
    from edge.model.embedding import background_embeddings

    rows = background_embeddings(b.background, spec, b.path)
    return f"  embedding: {spec.size} values (auricle teach), background set of {len(rows)} windows"


def bundle_lines(b: bundle.Bundle) -> list[str]:
    """Human-readable summary of a bundle."""
    m = b.manifest
    f = m.features
    hop_ms = m.hop_frames * f.hop_samples * 1000 / f.sample_rate
    window_s = m.window_samples / f.sample_rate
    lines = [
        f"{m.name} {m.version}  ({b.path}, created {m.created})",
        f"  size: {_file_size(b.path)} bundle, model.tflite {_mb(len(b.model))} uncompressed",
        f"  signature: {'present' if b.signature else 'none'}   "
        f"bundle sha256: {_file_sha256(b.path)} (as in model/state)",
        f"  input: {m.input.dtype} {list(m.input.shape)} ({m.input.channel_mode}), "
        f"window {window_s:.2f} s, hop {m.hop_frames} frames ({hop_ms:.0f} ms)",
        f"  features: {f.sample_rate} Hz, {f.n_bands} {f.scale} bands {f.f_min_hz:g}-{f.f_max_hz:g} Hz, "
        f"window/hop {f.window_samples}/{f.hop_samples} samples, fingerprint {m.fingerprint}",
        _embedding_line(b),
    ]
    lines += _label_lines(m)
    if m.audioset is not None:
        from edge.model import audioset

        lines += [f"  {line}" for line in audioset.info_lines(m.audioset)]
    rest = {k: v for k, v in m.metrics.items() if k not in _TABLED}
    if rest:
        lines.append("  metrics:")
        lines.extend(f"    {k}: {_short(v)}" for k, v in rest.items())
    return lines


_TABLED = ("per_label", "calibration")
"""Metrics keys shown as the label table rather than in the metrics list."""
OFF = 1.0
"""The threshold calibration gives a label that no threshold keeps within its false-alarm budget."""


def _mb(size: int) -> str:
    """Bytes as MB (10^6), the unit of the README and of model.max_bundle_mb."""
    return f"{size / 1e6:.2f} MB"


def _file_size(path: str) -> str:
    try:
        return _mb(os.path.getsize(path))
    except OSError:
        return "-"


def _file_sha256(path: str) -> str:
    """sha256 of the bundle file: what model/state, the update store and sha256sum name."""
    try:
        return bundle.sha256(Path(path).read_bytes())
    except OSError:
        return "-"


def _label_lines(m: bundle.Manifest) -> list[str]:
    events, per_label = m.event_labels, m.metrics.get("per_label")
    if isinstance(per_label, dict) and per_label:
        lines = [f"  labels ({len(events)}):", *_table(m, per_label)]
    else:
        lines = [f"  labels ({len(events)}): {', '.join(events)}"]
    if m.background_labels:
        lines.append(
            f"  background labels, scored but never published ({len(m.background_labels)}): "
            f"{', '.join(m.background_labels)}"
        )
    summary = m.metrics.get("calibration")
    if isinstance(summary, dict):
        lines.append(f"  calibration: {_calibration(summary)}")
    return lines


def _table(m: bundle.Manifest, per_label: dict[str, Any]) -> list[str]:
    """Threshold in force, recall and false alarms per hour of every event label, and whether (or why
    not) the label meets calibration's target."""
    summary = m.metrics.get("calibration")
    summary = summary if isinstance(summary, dict) else {}
    min_recall = summary.get("min_recall", 0.5)
    width = max(len("label"), *(len(x) for x in m.event_labels))
    lines = [f"    {'label':<{width}}  threshold  recall  false/h  95% bound/h  target"]
    missed = 0
    for label in m.event_labels:
        fig = per_label.get(label)
        fig = fig if isinstance(fig, dict) else {}
        threshold = m.thresholds.get(label, 0.5)  # EventDetector's default for a label left out
        verdict = _verdict(fig, threshold, min_recall)
        missed += verdict not in ("met", "-")
        lines.append(
            f"    {label:<{width}}  {_num(threshold, '.2f'):>9}  {_num(fig.get('recall'), '.2f'):>6}"
            f"  {_num(fig.get('false_per_hour'), '.3g'):>7}  {_num(fig.get('upper_95_per_hour'), '.3g'):>11}"
            f"  {verdict}"
        )
    share = summary.get("label_budget_per_hour")
    lines += [
        f"    target: recall >= {_num(min_recall, 'g')} on the validation clips at a threshold whose false alarms on",
        f"    background stay within {_num(share, '.3g')}/h per label (false/h: measured there); "
        f"{missed} of {len(m.event_labels)} labels miss it",
    ]
    return lines


def _verdict(fig: dict[str, Any], threshold: float, min_recall: Any) -> str:
    """'met', or why not: no threshold within budget, no validation clips, or the recall left too low."""
    met = fig.get("meets_budget")
    if not isinstance(met, bool):
        return "-"
    if met:
        return "met"
    recall = fig.get("recall")
    if threshold >= OFF:
        return "off: over budget at every threshold"
    if not isinstance(recall, (int, float)):
        return "no validation clips"
    if isinstance(min_recall, (int, float)) and recall < min_recall:
        return f"recall < {min_recall:g}"
    return "not met"


def _calibration(summary: dict[str, Any]) -> str:
    hours, budget = summary.get("background_hours"), summary.get("budget_per_hour")
    text = f"{_num(hours, '.3g')} h of background, budget {_num(budget, 'g')} false events/h in total"
    if "false_per_hour" in summary:
        text += f"; measured {_num(summary['false_per_hour'], '.3g')}/h"
        text += f" (95% bound {_num(summary.get('upper_95_per_hour'), '.3g')}/h)"
    return text


def _num(value: Any, spec: str) -> str:
    """A figure, or '-' when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return format(value, spec)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else f"{value:.4g}"
    return text if len(text) <= 100 else text[:97] + "..."
