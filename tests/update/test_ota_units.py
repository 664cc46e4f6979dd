"""The parts of over-the-air updates, one by one: the between-hops swap, the store, requests, self-tests, fetch."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.models import tone_bundle
from support.ota import BundleServer, members, rezip
from support.ota_driver import Host
from support.shared import ROOT

from edge.detect.events import EventDetector, EventParams
from edge.detect.pipeline import Pipeline, Swap
from edge.features import FeatureParams
from edge.model import agreement, bundle, selftest
from edge.model.bundle import BundleError, read_bundle, semver_key
from edge.model.classifier import Classifier
from edge.publish.payloads import Payloads
from edge.update.active import choose_startup, state_document
from edge.update.checks import Loaded, Policy, verify
from edge.update.fetch import FetchError, fetch
from edge.update.modelstore import ModelStore, Pointer, StoreError
from edge.update.request import Request, parse_install, parse_rollback
from edge.update.updater import Updater

RATE = 16000


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("units")
    return {
        "a": tone_bundle(folder / "a.auricle"),
        "b": tone_bundle(folder / "b.auricle", version="0.2.0", tones_hz=(1000.0, 2000.0)),
        "wide": tone_bundle(folder / "wide.auricle", window_frames=64, hop_frames=2),
        "bands": tone_bundle(folder / "bands.auricle", params=FeatureParams(n_bands=40)),
        "bare": tone_bundle(folder / "bare.auricle", selftest=False),
    }


def _signal(seconds: float = 4.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    tone = (t % 2.0) < 1.0
    noise = 0.001 * np.random.default_rng(3).standard_normal(len(t))
    return np.where(tone, 0.3 * np.sin(2 * np.pi * 1000 * t), noise).astype(np.float32)


class _Recorder:
    """Sink and scores hook: every decision's offset, the model that made it, every event."""

    def __init__(self) -> None:
        self.hops: list[tuple[float, int]] = []
        self.events: list[Any] = []
        self.model = 0

    def on_scores(self, offset: float, scores: np.ndarray) -> None:
        self.hops.append((offset, self.model))

    def publish_event(self, event: Any) -> None:
        self.events.append(event)

    def publish_state(self, label: str, on: bool) -> None:
        pass

    def publish_scores(self, *_args: Any) -> None:
        pass

    def publish_level(self, *_args: Any) -> None:
        pass


def _run_with_swap(first: Path, second: Path, swap_at: int, blocks: list[int]) -> tuple[_Recorder, Pipeline]:
    """Feed the signal in ``blocks``; ask for the swap between the blocks where ``swap_at`` samples are passed."""
    rec = _Recorder()
    a, b = Classifier(read_bundle(first)), Classifier(read_bundle(second))
    pipeline = Pipeline(a, detector=EventDetector(a.labels, {}, EventParams()), sink=rec, on_scores=rec.on_scores)
    signal, pos, asked = _signal(), 0, False

    def switched() -> None:
        rec.model = 1

    for n in blocks:
        if not asked and pos >= swap_at:
            pipeline.swap(Swap(b, EventDetector(b.labels, {}, EventParams()), on_switch=switched))
            asked = True
        pipeline.feed(signal[pos : pos + n], (pos + n) / RATE)
        pos += n
        if pos >= len(signal):
            break
    pipeline.finish()
    return rec, pipeline


@pytest.mark.parametrize(("second", "path"), [("b", "at once"), ("wide", "warm-up"), ("bands", "warm-up")])
def test_swap_loses_no_hop(bundles: dict[str, Path], second: str, path: str) -> None:
    blocks = [int(n) for n in np.random.default_rng(7).integers(1, 900, size=400)]
    rec, pipeline = _run_with_swap(bundles["a"], bundles[second], int(0.8 * RATE), blocks)
    offsets = np.array([o for o, _ in rec.hops])
    models = [m for _, m in rec.hops]
    assert models[0] == 0 and models[-1] == 1 and sorted(models) == models, "one switch, old then new"
    new_hop = Classifier(read_bundle(bundles[second])).manifest.hop_frames
    steps = np.diff(offsets)
    assert steps.min() > 0 and steps.max() <= max(4, new_hop) * 0.01 + 1e-9, f"{path}: a hop was lost"
    switch = offsets[models.index(1)]
    assert 0.8 <= switch <= 0.8 + (0.8 if path == "warm-up" else 0.1), switch
    first = rec.events[0]
    assert first.kind == "start" and first.offset_s < 0.8, "a tone event was running at the switch"
    end = next(e for e in rec.events if e.id == first.id and e.kind == "end")
    assert end.offset_s <= switch, "the switch ended it, before the new model's first hop"
    assert {e.id for e in rec.events if e.kind == "start"} == {e.id for e in rec.events if e.kind == "end"}
    assert pipeline.stats.hops == len(rec.hops)


def test_swap_at_once_gives_the_new_models_own_scores(bundles: dict[str, Path]) -> None:
    """Same front end and window: after the switch the new model scores exactly as if it had run all along."""
    b = Classifier(read_bundle(bundles["b"]))
    signal = _signal()
    got: list[tuple[float, np.ndarray]] = []
    ref: list[tuple[float, np.ndarray]] = []
    pipeline = Pipeline(Classifier(read_bundle(bundles["a"])), on_scores=lambda o, s: got.append((o, s.copy())))
    half = len(signal) // 2 + 77
    pipeline.feed(signal[:half], half / RATE)
    pipeline.swap(Swap(b, None, on_switch=lambda: got.clear()))
    pipeline.feed(signal[half:], len(signal) / RATE)
    Pipeline(b, on_scores=lambda o, s: ref.append((o, s.copy()))).feed(signal, len(signal) / RATE)
    after = dict(ref)
    assert got and all(np.array_equal(s, after[o]) for o, s in got)


def test_swap_refuses_another_sample_rate(bundles: dict[str, Path], tmp_path: Path) -> None:
    other = tone_bundle(tmp_path / "8k.auricle", params=FeatureParams(sample_rate=8000, f_max_hz=3800.0))
    pipeline = Pipeline(Classifier(read_bundle(bundles["a"])))
    with pytest.raises(ValueError, match="8000 Hz model into a 16000 Hz stream"):
        pipeline.swap(Swap(Classifier(read_bundle(other)), None))


def test_store_keeps_versions_and_prunes_the_oldest(bundles: dict[str, Path], tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    entries = []
    for i in range(5):
        raw = bundles["a"].read_bytes() + b"\0" * i  # five different files (zip readers ignore the tail)
        manifest = read_bundle(bundles["a"]).manifest
        entries.append(store.put(raw, manifest, bundle.sha256(raw)))
        os.utime(store.path_of(entries[-1]), (1000 + i, 1000 + i))
    store.switch(Pointer(active=entries[0], previous=entries[1]))
    removed = store.prune(3)
    kept = sorted(p.name for p in store.versions.glob("*.auricle"))
    assert sorted([entries[0].file, entries[1].file, entries[4].file]) == kept
    assert sorted(removed) == sorted(e.file for e in entries[2:4])


def test_a_tampered_pointer_cannot_name_a_file_outside_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    entry = {"file": "../../etc/passwd", "name": "x", "version": "1.0.0", "sha256": "0" * 64}
    (tmp_path / "active").write_text(json.dumps({"active": entry, "previous": None}))
    with pytest.raises(StoreError, match="bad file name"):
        store.pointer()


def test_semver_order() -> None:
    versions = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    assert sorted(versions, key=semver_key) == versions
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")


def test_requests_are_parsed_or_refused_in_one_line() -> None:
    raw = b"PK\x03\x04 pretend bundle"
    assert parse_install(raw).id == bundle.sha256(raw) and parse_install(raw).payload == raw
    ok = parse_install(json.dumps({"id": "r1", "url": "https://h/b.auricle", "sha256": "a" * 64}).encode())
    assert (ok.id, ok.url, ok.force, ok.problem) == ("r1", "https://h/b.auricle", False, None)
    inline = parse_install(json.dumps({"id": "r2", "bundle_b64": "UEsDBA==", "force": True}).encode())
    assert inline.payload == b"PK\x03\x04" and inline.force
    for payload, words in [
        (b'{"id": "r3", "url": "ftp://h/x", "sha256": "' + b"a" * 64 + b'"}', "only http and https"),
        (b'{"id": "r4", "url": "http://h/x", "sha256": "short"}', "sha256: expected 64"),
        (b'{"id": "r5", "url": "http://h/x", "sha256": "' + b"a" * 64 + b'", "run": 1}', "unknown key(s) run"),
        (b'{"id": 5}', "id: expected a string"),
        (b"{nope", "not valid JSON"),
        (b'{"id": "r6", "url": "http://h/x", "sha256": NaN}', "not valid JSON"),
    ]:
        problem = parse_install(payload).problem
        assert problem is not None and words in problem and "\n" not in problem, (payload, problem)
    assert parse_rollback(b"").problem is None
    assert parse_rollback(b'{"id": "rb"}').id == "rb"
    assert "expected" in str(parse_rollback(b'{"id": "rb", "x": 1}').problem)


def test_selftest_round_trip_and_what_it_catches(bundles: dict[str, Path], tmp_path: Path) -> None:
    b = read_bundle(bundles["a"])
    assert b.selftest is not None and b.manifest.selftest_sha256 == bundle.sha256(b.selftest)
    test = selftest.parse_selftest(b.selftest, b.manifest, "a")
    result = selftest.run_selftest(Classifier(b), test, budget_ms=5000)
    assert result.max_diff_steps == 0.0
    with pytest.raises(BundleError, match="over the 1e-06 ms budget"):
        selftest.run_selftest(Classifier(b), test, budget_ms=1e-6)
    # another model's self-test does not match this model
    other = selftest.parse_selftest(read_bundle(bundles["b"]).selftest or b"", b.manifest, "b")
    wrong = selftest.SelfTest(other.samples, (1.0 - other.scores).astype(np.float32))
    with pytest.raises(BundleError, match="scores differ"):
        selftest.run_selftest(Classifier(b), wrong, budget_ms=5000)
    # too short to make a window
    with pytest.raises(ValueError, match="one window"):
        selftest.make_selftest(b, np.zeros(100))
    # added to a bundle without one: pinned by the manifest; unpinned or swapped ones are refused
    bare = tmp_path / "bare.auricle"
    bare.write_bytes(bundles["bare"].read_bytes())
    assert read_bundle(bare).selftest is None
    selftest.add_selftest(bare, 0.3 * np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE))
    assert read_bundle(bare).manifest.selftest_sha256 is not None
    found = members(bare)
    with pytest.raises(BundleError, match="not covered by the manifest"):
        bundle.parse_bundle(rezip(members(bundles["bare"]) | {"selftest.npz": found["selftest.npz"]}), "x")
    with pytest.raises(BundleError, match=r"selftest\.npz sha256 mismatch"):
        bundle.parse_bundle(rezip(found | {"selftest.npz": found["selftest.npz"] + b"\0"}), "x")
    with pytest.raises(BundleError, match=r"missing selftest\.npz"):
        bundle.parse_bundle(rezip({k: v for k, v in found.items() if k != "selftest.npz"}), "x")


def test_selftest_file_is_checked(bundles: dict[str, Path]) -> None:
    m = read_bundle(bundles["a"]).manifest
    buf = io.BytesIO()
    np.savez(buf, samples=np.zeros(10, np.int16), scores=np.zeros(3, np.float32))
    with pytest.raises(BundleError, match="one window"):
        selftest.parse_selftest(buf.getvalue(), m, "x")
    buf = io.BytesIO()
    np.savez(buf, samples=np.array([object()]), scores=np.zeros(3, np.float32))
    with pytest.raises(BundleError, match="not a readable self-test"):
        selftest.parse_selftest(buf.getvalue(), m, "x")
    with pytest.raises(BundleError, match="not a readable self-test"):
        selftest.parse_selftest(b"junk", m, "x")


@pytest.fixture
def server() -> Iterator[BundleServer]:
    httpd = BundleServer()
    yield httpd
    httpd.close()


def test_fetch(server: BundleServer) -> None:
    server.files["x"] = b"hello" * 100
    sha = bundle.sha256(server.files["x"])
    assert fetch(server.url("x"), sha256=sha, max_bytes=1000, timeout_s=5) == server.files["x"]
    with pytest.raises(FetchError, match="over the 100 byte limit"):
        fetch(server.url("x"), sha256=sha, max_bytes=100, timeout_s=5)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server.url("missing"), sha256=sha, max_bytes=1000, timeout_s=5)


def test_fetch_follows_no_redirect_off_http() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FetchError, match="download: HTTP 302"):
            fetch(f"http://127.0.0.1:{httpd.server_address[1]}/x", sha256="0" * 64, max_bytes=100, timeout_s=5)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_documented_model_state_matches_the_code(bundles: dict[str, Path], tmp_path: Path) -> None:
    text = (ROOT / "docs" / "ota.md").read_text()
    block = re.search(r"<!-- payload: model_state -->\s*```json\n(.*?)```", text, flags=re.S)
    assert block is not None
    documented = json.loads(block.group(1))
    b = read_bundle(bundles["a"])
    model = Loaded(bundle=b, classifier=Classifier(b), sha256="0" * 64, origin="installed")
    doc = state_document(model, ModelStore(tmp_path), None, None, None, "configured", ("house",))
    published = json.loads(Payloads("0.1.0").model_state(doc))
    assert set(documented) == set(published)
    assert set(documented["active"]) == set(model.describe())
    assert set(documented["last"]) == {"id", "action", "received", "result", "reason", "finished"} | set(
        model.describe()
    )


def test_a_zip_bomb_is_refused_before_it_is_unpacked(bundles: dict[str, Path]) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in (members(bundles["a"]) | {"selftest.npz": b"\0" * 20_000_000}).items():
            zf.writestr(name, data)
    bomb = out.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(BundleError, match="uncompressed, over the 4000000 byte limit"):
        verify(bomb, "bomb", Policy(allow_unsigned=True, max_bundle_mb=1.0), budget_ms=None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzz_model_commands_never_raise(payload: bytes) -> None:
    for request in (parse_install(payload), parse_rollback(payload), parse_install(b"{" + payload)):
        assert request.problem is None or "\n" not in request.problem
    with contextlib.suppress(BundleError):
        verify(payload, "fuzz", Policy(allow_unsigned=True), budget_ms=None)


def test_start_up_falls_back_to_the_previous_version(bundles: dict[str, Path], tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    entries = []
    for name in ("a", "b"):
        raw = bundles[name].read_bytes()
        entries.append(store.put(raw, read_bundle(bundles[name]).manifest, bundle.sha256(raw)))
    store.switch(Pointer(active=entries[1], previous=entries[0]))
    store.path_of(entries[1]).write_bytes(b"rotten")
    updater = Updater(store, Policy(allow_unsigned=True), host=None)  # type: ignore[arg-type]

    def configured() -> Loaded:
        raise AssertionError("the previous installed version comes first")

    model, problem = choose_startup(store, updater.load_entry, configured)
    assert model is not None and model.bundle.manifest.version == "0.1.0" and model.origin == "installed"
    assert problem is not None and "installed tones 0.2.0" in problem and "sha256 changed on disk" in problem


def _until(done: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.01)


def _install(updater: Updater, path: Path) -> None:
    updater.submit(Request(action="install", id=path.stem, payload=path.read_bytes(), force=True))
    _until(lambda: (updater.last or {}).get("id") == path.stem and updater.last["result"] != "pending", "answer")
    assert (updater.last or {}).get("result") == "installed", updater.last


def test_a_model_that_fails_probation_is_never_previous(bundles: dict[str, Path], tmp_path: Path) -> None:
    """b, then wide, are trusted; bands fails its probation: back on wide with b as previous, so a
    rollback on command goes to b, never to the model that failed."""
    store = ModelStore(tmp_path / "models")
    host = Host(bundles["a"])  # the updater's host without audio: a switch happens at once
    host.model = host.load_configured()
    updater = Updater(store, Policy(allow_unsigned=True, latency_budget_ms=5000, probation_s=60), host)
    updater.start()
    try:
        for name in ("b", "wide"):
            _install(updater, bundles[name])
            assert host.model is not None and store.pointer().trial
            updater.probation_passed(host.model.sha256)
            _until(lambda: not store.pointer().trial, "end of the trial")
        trusted = host.model
        _install(updater, bundles["bands"])
        failed = store.pointer().active
        assert failed is not None and store.pointer().trial
        host.model = trusted  # the worker switched back
        updater.rolled_back(trusted, "non-finite scores")
        _until(lambda: (updater.last or {}).get("result") == "rolled_back", "rollback")
        after = store.pointer()
        assert after.active == trusted.entry and after.previous is not None, after
        assert after.previous.sha256 != failed.sha256 and after.previous.version == "0.2.0", after
        updater.submit(Request(action="rollback", id="rb"))
        _until(lambda: (updater.last or {}).get("id") == "rb" and updater.last["result"] != "pending", "rollback")
    finally:
        updater.stop()
    assert host.model is not None and host.model.sha256 == after.previous.sha256, "the rollback goes to b"


def test_a_restart_during_probation_never_leaves_the_failed_model_previous(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """What the daemon finds after kill -9 during probation: back on the model before, with its previous."""
    store = ModelStore(tmp_path / "models")
    entries = {}
    for name in ("a", "b", "wide"):
        raw = bundles[name].read_bytes()
        entries[name] = store.put(raw, read_bundle(bundles[name]).manifest, bundle.sha256(raw))
    store.switch(Pointer(active=entries["wide"], previous=entries["b"], trial=True, prior=entries["a"]))
    assert store.prune(2) == [], "the version a failed trial returns to is kept"
    rolled = store.recover()
    assert rolled is not None and rolled["result"] == "rolled_back" and "was on probation" in rolled["reason"]
    assert store.pointer() == Pointer(active=entries["b"], previous=entries["a"])
    # the first install failed: back on the configured model, with nothing to roll back to
    store.switch(Pointer(active=entries["b"], previous=None, trial=True, prior=None))
    store.recover()
    assert store.pointer() == Pointer()


@pytest.mark.parametrize("name", ["esc50.auricle", "esc50-4.1.0.auricle", "esc50-3.0.0.auricle"])
def test_builtin_kernels_pass_the_self_test_that_xnnpack_stored(name: str) -> None:
    """The self-test's scores come from XNNPACK at training; a device on ``model.kernels: builtin`` runs it on
    other kernels and must still take the bundle (README "Supported platforms")."""
    path = ROOT / "edge" / "models" / name if name == "esc50.auricle" else ROOT / "tests" / "data" / name
    _b, classifier, note = verify(
        path.read_bytes(), name, Policy(allow_unsigned=True, kernels="builtin"), budget_ms=None
    )
    assert classifier.kernels == "builtin" and classifier.runtime_text.endswith(", builtin kernels")
    steps = float(re.search(r"scores within (\S+) steps", note).group(1))  # type: ignore[union-attr]
    assert steps <= agreement.INT8_TOLERANCE_STEPS, note
