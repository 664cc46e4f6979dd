"""The bundle contract: what is accepted, every rejection reason, signing, and the model CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.models import tone_bundle

from edge.cli.main import main as cli_main
from edge.features import FeatureParams, compute, window_at
from edge.model import bundle
from edge.model.bundle import BundleError, read_bundle, write_bundle
from edge.model.classifier import Classifier


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "tones.auricle")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _with_manifest(good: Path, tmp: Path, **changes: object) -> Path:
    members = _members(good)
    manifest = json.loads(members["manifest.json"])
    for dotted, value in changes.items():
        node = manifest
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    members["manifest.json"] = json.dumps(manifest).encode()
    return _write(tmp / "changed.auricle", members)


def _reason(path: Path, key: object = None) -> str:
    with pytest.raises(BundleError) as info:
        read_bundle(path, public_key=key)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return str(info.value)


def test_good_bundle_reads_and_classifies(good: Path) -> None:
    b = read_bundle(good)
    m = b.manifest
    assert m.labels == ("quiet", "tone_1000", "tone_3000")
    assert m.input.dtype == "int8" and m.input.shape == (1, 48, 64, 3)
    assert m.fingerprint == FeatureParams().fingerprint()
    clf = Classifier(b)
    tone = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    frames = compute(tone, m.features)
    scores = clf.scores(window_at(frames, len(frames), m.window_frames, m.features))
    assert clf.labels[int(scores.argmax())] == "tone_1000"
    assert scores.dtype == np.float32 and 0.99 <= scores.sum() <= 1.01


def test_write_is_deterministic_and_round_trips(good: Path, tmp_path: Path) -> None:
    b = read_bundle(good)
    out = tmp_path / "copy.auricle"
    write_bundle(out, b.manifest, b.model, selftest=b.selftest)
    assert read_bundle(out).manifest == b.manifest
    assert out.read_bytes() == good.read_bytes()
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.auricle"
    path.write_bytes(b"hello")
    assert "not a zip" in _reason(path)


def test_unreadable(tmp_path: Path) -> None:
    assert "cannot read" in _reason(tmp_path / "missing.auricle")


@pytest.mark.parametrize("name", ["../model.tflite", "/etc/passwd", "a/../../b", "..\\evil"])
def test_path_traversal(good: Path, tmp_path: Path, name: str) -> None:
    members = {**_members(good), name: b"x"}
    assert "path traversal" in _reason(_write(tmp_path / "t.auricle", members))


def test_extra_member(good: Path, tmp_path: Path) -> None:
    members = {**_members(good), "run.sh": b"rm -rf /"}
    assert "unexpected member(s) run.sh" in _reason(_write(tmp_path / "t.auricle", members))


@pytest.mark.parametrize("missing", ["manifest.json", "model.tflite"])
def test_missing_member(good: Path, tmp_path: Path, missing: str) -> None:
    members = _members(good)
    del members[missing]
    assert f"missing {missing}" in _reason(_write(tmp_path / "t.auricle", members))


def test_sha256_mismatch(good: Path, tmp_path: Path) -> None:
    members = _members(good)
    model = bytearray(members["model.tflite"])
    model[-1] ^= 0xFF
    members["model.tflite"] = bytes(model)
    assert "sha256 mismatch" in _reason(_write(tmp_path / "t.auricle", members))


def test_missing_tflite_magic(good: Path, tmp_path: Path) -> None:
    junk = b"\0" * 64
    path = _with_manifest(good, tmp_path, model_sha256=bundle.sha256(junk))
    members = {**_members(path), "model.tflite": junk}
    assert "no TFL3 magic" in _reason(_write(tmp_path / "t2.auricle", members))


def test_unknown_schema_version(good: Path, tmp_path: Path) -> None:
    assert "unknown schema_version 2" in _reason(_with_manifest(good, tmp_path, schema_version=2))


def test_manifest_not_json(good: Path, tmp_path: Path) -> None:
    members = {**_members(good), "manifest.json": b"{nope"}
    assert "not valid JSON" in _reason(_write(tmp_path / "t.auricle", members))


def test_params_front_end_cannot_compute(good: Path, tmp_path: Path) -> None:
    assert "features.scale: expected one of" in _reason(_with_manifest(good, tmp_path, features__scale="gammatone"))
    assert "n_fft (256) must be >= window_samples" in _reason(_with_manifest(good, tmp_path, features__n_fft=256))


def test_fingerprint_mismatch(good: Path, tmp_path: Path) -> None:
    # Parameters that are valid but not the ones the model was trained with.
    assert "fingerprint" in _reason(_with_manifest(good, tmp_path, features__db_floor=-90.0))


def test_input_shape_does_not_match_window(good: Path, tmp_path: Path) -> None:
    assert "does not match window_frames" in _reason(_with_manifest(good, tmp_path, window_frames=50))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": "v1"}, "expected semver"),
        ({"labels": ["a", "a", "b"]}, "unique"),
        ({"thresholds": {"bark": 0.5}}, "unknown label(s) bark"),
        ({"thresholds": {"quiet": 1.5}}, "0..1"),
        ({"model_sha256": "xyz"}, "64 lowercase hex"),
        ({"hop_frames": 0}, "hop_frames: expected an integer 1..4096"),
        ({"name": 5}, "name: expected a string"),
        ({"alert_labels": ["bark"]}, "alert_labels: not among the event labels: bark"),
    ],
)
def test_manifest_rules(good: Path, tmp_path: Path, change: dict[str, object], reason: str) -> None:
    assert reason in _reason(_with_manifest(good, tmp_path, **change))


def test_alert_labels_are_optional(good: Path, tmp_path: Path) -> None:
    assert "alert_labels" not in json.loads(read_bundle(good).manifest.to_json())  # bundles as before
    marked = read_bundle(_with_manifest(good, tmp_path, alert_labels=["tone_1000"])).manifest
    assert marked.alert_labels == ("tone_1000",)
    assert json.loads(marked.to_json())["alert_labels"] == ["tone_1000"]


def test_model_input_must_match_manifest(good: Path, tmp_path: Path) -> None:
    # The manifest promises 40x64 input, the TFLite file takes 48x64: refused at load time.
    b = read_bundle(good)
    m = b.manifest
    lying = dataclasses.replace(m, window_frames=40, input=dataclasses.replace(m.input, frames=40))
    write_bundle(tmp_path / "lie.auricle", lying, b.model)
    with pytest.raises(BundleError, match="model input shape"):
        Classifier(read_bundle(tmp_path / "lie.auricle"))


def test_signature(good: Path, tmp_path: Path) -> None:
    private_pem, public_pem = bundle.generate_keypair()
    (tmp_path / "k.key").write_bytes(private_pem)
    (tmp_path / "k.pub").write_bytes(public_pem)
    key, pub = bundle.load_private_key(tmp_path / "k.key"), bundle.load_public_key(tmp_path / "k.pub")
    signed = tmp_path / "signed.auricle"
    signed.write_bytes(good.read_bytes())
    assert "unsigned, but a public key is configured" in _reason(signed, pub)
    bundle.sign_bundle(signed, key)
    assert read_bundle(signed, public_key=pub).signature is not None
    other = bundle.Ed25519PrivateKey.generate().public_key()
    assert "bad signature" in _reason(signed, other)
    # Changing the manifest (say, lowering a threshold) breaks the signature.
    members = _members(signed)
    members["manifest.json"] = members["manifest.json"].replace(b'"quiet": 0.5', b'"quiet": 0.4')
    assert "bad signature" in _reason(_write(tmp_path / "t.auricle", members), pub)


def test_keys_must_be_ed25519_pem(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(BundleError, match="not a PEM key"):
        bundle.load_public_key(tmp_path / "junk.pem")


def test_model_cli(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "b.auricle"
    work.write_bytes(good.read_bytes())
    prefix = str(tmp_path / "release")
    assert cli_main(["model", "keygen", prefix]) == 0
    assert (Path(prefix + ".key").stat().st_mode & 0o777) == 0o600
    assert cli_main(["model", "keygen", prefix]) == 2, "refuses to overwrite a key"
    assert cli_main(["model", "verify", str(work), "--pubkey", prefix + ".pub"]) == 2
    assert "unsigned" in capsys.readouterr().err
    assert cli_main(["model", "sign", str(work), "--key", prefix + ".key"]) == 0
    assert cli_main(["model", "verify", str(work), "--pubkey", prefix + ".pub"]) == 0
    assert "signature valid" in capsys.readouterr().out
    assert cli_main(["model", "info", str(work)]) == 0
    out = capsys.readouterr().out
    assert "tone_1000" in out and "int8 [1, 48, 64, 3]" in out
    assert cli_main(["model", "info", str(work), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tones"


def test_cli_bad_bundle_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.auricle"
    path.write_text("garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "model", "info", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"auricle: {path}: not a bundle (not a zip file)"
    assert "Traceback" not in proc.stderr
