"""Over-the-air model updates, black box: ``auricle run`` as a subprocess on a real mosquitto.

The daemon replays a tone clip in real time in a loop and publishes the scores
of every hop, so a gap in hops shows as a gap in ``offset_s``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.daemon import Daemon, tone_wav
from support.models import tone_bundle
from support.ota import (
    BundleServer,
    answer,
    daemon_config,
    edit_manifest,
    keypair,
    members,
    resign,
    rezip,
    signed_copy,
    state,
)

from edge.cli.main import main as cli_main
from edge.model import bundle
from edge.update.modelstore import ModelStore, Pointer
from kit.broker import Message, Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration
HOP_S = 0.04  # tone_bundle: 4 frames of 10 ms


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    key, pub = keypair(folder, "release")
    other_key, other_pub = keypair(folder, "other")
    return {"key": key, "pub": pub, "other_key": other_key, "other_pub": other_pub}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> dict[str, Path]:
    """v1 runs first; v2 has another label set; v3 is NaN whenever it hears no tone; old is older than v1."""
    folder = tmp_path_factory.mktemp("models")
    plain = {
        "v1": tone_bundle(folder / "v1.plain", version="0.1.0"),
        "v2": tone_bundle(folder / "v2.plain", version="0.2.0", tones_hz=(1000.0, 2000.0)),
        "v3": tone_bundle(folder / "v3.plain", version="0.3.0", int8=False, nan_when_quiet=True),
        "old": tone_bundle(folder / "old.plain", version="0.0.9"),
    }
    signed = {name: signed_copy(path, folder / f"{name}.auricle", keys["key"]) for name, path in plain.items()}
    signed["v2_unsigned"] = plain["v2"]
    signed["v2_other_key"] = signed_copy(plain["v2"], folder / "v2_other.auricle", keys["other_key"])
    return signed


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_wav(tmp_path_factory.mktemp("audio") / "tone.wav")


@pytest.fixture
def server() -> Iterator[BundleServer]:
    httpd = BundleServer()
    yield httpd
    httpd.close()


def _scores(sub: Subscriber, device: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.messages(f"auricle/{device}/scores")]


def _largest_gap_hops(scores: list[dict[str, Any]]) -> int:
    """Hops missing between consecutive scores messages (0 = none)."""
    offsets = np.array([s["offset_s"] for s in scores])
    return round(float(np.max(np.diff(offsets))) / HOP_S) - 1


def _retained(broker: Mosquitto, subscriber_factory: Callable[..., Subscriber], topic: str) -> bytes | None:
    """The retained payload on ``topic`` now (None when there is none)."""
    sub = subscriber_factory(topic)
    try:
        return sub.wait_for(lambda m: m.retain, 1.0, "retained").payload
    except AssertionError:
        return None


def _install(broker: Mosquitto, device: str, payload: bytes) -> str:
    publish(broker.host, broker.port, f"auricle/{device}/model/install", payload)
    return bundle.sha256(payload)


def test_install_switches_between_hops_then_rollback_then_automatic_rollback(
    tmp_path: Path,
    models: dict[str, Path],
    clip: Path,
    keys: dict[str, Path],
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    config, device = daemon_config(
        tmp_path, model=models["v1"], clip=clip, broker=mosquitto, pub=keys["pub"], probation_s=30
    )
    sub = subscriber_factory(f"auricle/{device}/#")
    ha = subscriber_factory(f"homeassistant/binary_sensor/{device}/#")
    with Daemon(config) as daemon:
        first = state(sub.wait_for_topic(f"auricle/{device}/model/state", 30))
        assert first["active"]["version"] == "0.1.0" and first["active"]["origin"] == "configured"
        assert re.fullmatch(r"ai-edge-litert \d+\.\d+\.\d+ on \w+, xnnpack kernels", first["runtime"]), first["runtime"]
        sub.wait_for(lambda m: m.topic.endswith("/event") and b'"tone_1000"' in m.payload, 15, "a tone_1000 event")

        v2 = _install(mosquitto, device, models["v2"].read_bytes())
        done = answer(sub, device, v2)
        assert done["last"]["result"] == "installed", done
        assert done["active"]["version"] == "0.2.0" and done["previous"] == {"origin": "configured"}
        assert done["probation_until"] is not None
        sub.wait_for(lambda m: m.topic.endswith("/scores") and b'"0.2.0"' in m.payload, 10, "scores from 0.2.0")
        # discovery follows: the new label appears, the label the new model lacks is deleted
        ha.wait_for(lambda m: m.topic.endswith("/tone_2000/config") and m.payload != b"", 10, "tone_2000 entity")
        ha.wait_for(lambda m: m.topic.endswith("/tone_3000/config") and m.payload == b"", 10, "tone_3000 removed")
        assert _retained(mosquitto, subscriber_factory, f"auricle/{device}/state/tone_3000") is None

        rollback = {"id": "rb-1"}
        publish(mosquitto.host, mosquitto.port, f"auricle/{device}/model/rollback", json.dumps(rollback))
        back = answer(sub, device, "rb-1")
        assert back["last"]["result"] == "rolled_back" and back["active"]["version"] == "0.1.0", back
        time.sleep(1.0)  # a second of 0.1.0 scores after the rollback
        scores = _scores(sub, device)
        versions = [s["model_version"] for s in scores]
        assert "0.2.0" in versions and versions[-1] == "0.1.0"
        gap = _largest_gap_hops(scores)
        assert gap == 0, f"{gap} hops lost across two switches"

        v3 = _install(mosquitto, device, models["v3"].read_bytes())
        assert answer(sub, device, v3)["last"]["result"] == "installed"

        def rolled_back(m: Message) -> bool:
            return m.topic.endswith("/model/state") and (state(m).get("last") or {}).get("result") == "rolled_back"

        sub.clear()
        auto = state(sub.wait_for(rolled_back, 15, "automatic rollback"))
        assert "non-finite scores" in auto["last"]["reason"] and auto["active"]["version"] == "0.1.0", auto
        assert auto["previous"]["version"] == "0.2.0", "the model that failed is never previous"
        health = json.loads(sub.wait_for_topic(f"auricle/{device}/health", 5).payload)
        assert health["model_version"] == "0.1.0" and health["model_swaps"] == 4 and health["errors"] == 0
        publish(mosquitto.host, mosquitto.port, f"auricle/{device}/model/rollback", json.dumps({"id": "rb-2"}))
        again = answer(sub, device, "rb-2")
        assert again["active"]["version"] == "0.2.0", "a rollback after a failed probation never brings it back"
        assert daemon.proc is not None and daemon.proc.poll() is None, "the same process all along"
        assert daemon.terminate(15) == 0
    _assert_events_end_with_their_model(sub, device)
    assert "Traceback" not in daemon.stderr
    pointer = ModelStore(tmp_path / "models").pointer()
    assert pointer.active is not None and pointer.active.version == "0.2.0" and pointer.previous is None
    assert not pointer.trial


def _assert_events_end_with_their_model(sub: Subscriber, device: str) -> None:
    """A switch ends the running events first: each event starts and ends under the same model."""
    events: dict[str, dict[str, str]] = {}
    for m in sub.messages(f"auricle/{device}/event"):
        e = json.loads(m.payload)
        events.setdefault(e["id"], {})[e["kind"]] = e["model_version"]
    assert events
    unended = [i for i, kinds in events.items() if "end" not in kinds]
    assert not unended, f"events never ended: {unended}"
    mixed = {i: kinds for i, kinds in events.items() if kinds.get("start", kinds["end"]) != kinds["end"]}
    assert not mixed, f"events that ended under another model: {mixed}"


def _refusals(models: dict[str, Path], keys: dict[str, Path], server: BundleServer) -> list[tuple[str, bytes, str]]:
    """(case, payload, expected words in the reason) for every way an install must be refused."""
    v2 = members(models["v2"])
    flipped = bytearray(v2["model.tflite"])
    flipped[len(flipped) // 2] ^= 0xFF
    garbage = v2["model.tflite"][:8] + os.urandom(len(v2["model.tflite"]) - 8)

    def pin_model(m: dict[str, Any]) -> None:
        m["model_sha256"] = bundle.sha256(garbage)

    def wrong_scores(data: dict[str, bytes]) -> dict[str, bytes]:
        import io

        with np.load(io.BytesIO(data["selftest.npz"])) as npz:
            samples, scores = npz["samples"], npz["scores"]
        buf = io.BytesIO()
        np.savez(buf, samples=samples, scores=(1.0 - scores).astype(np.float32))
        test = buf.getvalue()
        data = edit_manifest(data, lambda m: m.update(selftest_sha256=bundle.sha256(test)))
        return data | {"selftest.npz": test}

    server.files["v2"] = models["v2"].read_bytes()
    key = keys["key"]
    return [
        ("tampered model bytes", rezip(v2 | {"model.tflite": bytes(flipped)}), "model.tflite sha256 mismatch"),
        ("tampered manifest", rezip(edit_manifest(v2, lambda m: m["thresholds"].update(quiet=0.1))), "bad signature"),
        ("wrong key", models["v2_other_key"].read_bytes(), "bad signature"),
        ("unsigned", models["v2_unsigned"].read_bytes(), "unsigned"),
        ("truncated", models["v2"].read_bytes()[:-200], "not a zip"),
        ("not a zip", b"certainly not a bundle", "not a zip"),
        ("path traversal", rezip(v2 | {"../evil.sh": b"rm -rf /"}), "path traversal"),
        (
            "features the front end cannot compute",
            rezip(resign(edit_manifest(v2, lambda m: m["features"].update(n_fft=1024)), key)),
            "front end cannot reproduce",
        ),
        (
            "corrupt TFLite",
            rezip(resign(edit_manifest(v2 | {"model.tflite": garbage}, pin_model), key)),
            "model does not load",
        ),
        ("smoke-test mismatch", rezip(resign(wrong_scores(v2), key)), "smoke test: scores differ"),
        ("older version", models["old"].read_bytes(), "older than the active 0.1.0"),
        ("too large", b"\0" + os.urandom(59_999), "too large"),  # never a '{': random bytes were JSON 1 in 256
        ("url wrong sha256", _url("u1", server.url("v2"), "0" * 64), "sha256 mismatch"),
        ("url timeout", _url("u2", server.url("slow"), "1" * 64), "timed out"),
        ("url oversize", _url("u3", server.url("big"), "2" * 64), "byte limit"),
        ("url not http", _url("u4", "file:///etc/passwd", "3" * 64), "only http and https"),
        ("bad JSON request", b'{"id": "u5", "url": 5}', "url: expected a string"),
    ]


def _table_row(table: str, device: str) -> list[str]:
    """The cells of ``device``'s row in ``auricle model push``'s table."""
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [device])


def _url(rid: str, url: str, sha: str) -> bytes:
    return json.dumps({"id": rid, "url": url, "sha256": sha}).encode()


def _request_id(payload: bytes) -> str:
    return str(json.loads(payload)["id"]) if payload.startswith(b"{") else bundle.sha256(payload)


def test_every_refusal_leaves_the_old_model_classifying(
    tmp_path: Path,
    models: dict[str, Path],
    clip: Path,
    keys: dict[str, Path],
    server: BundleServer,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, device = daemon_config(
        tmp_path,
        model=models["v1"],
        clip=clip,
        broker=mosquitto,
        pub=keys["pub"],
        max_bundle_mb=0.05,
        url_timeout_s=1.0,
    )
    server.stall_s = 3.0
    sub = subscriber_factory(f"auricle/{device}/#")
    stale = _url("stale", server.url("v2"), bundle.sha256(models["v2"].read_bytes()))
    publish(mosquitto.host, mosquitto.port, f"auricle/{device}/model/install", stale, retain=True)
    with Daemon(config) as daemon:
        assert "retained commands are ignored" in answer(sub, device, "stale")["last"]["reason"]
        publish(mosquitto.host, mosquitto.port, f"auricle/{device}/model/install", b"", retain=True)  # clear it
        same = answer(sub, device, _install(mosquitto, device, models["v1"].read_bytes()))
        assert same["last"]["result"] == "unchanged" and "already active" in same["last"]["reason"]
        wrong = []
        for case, payload, words in _refusals(models, keys, server):
            _install(mosquitto, device, payload)
            got = answer(sub, device, _request_id(payload))
            reason = got["last"]["reason"]
            if got["last"]["result"] != "refused" or words not in reason or got["active"]["version"] != "0.1.0":
                wrong.append(f"{case}: {got['last']['result']}: {reason}")
        assert not wrong, "\n".join(wrong)
        sub.clear()
        latest = json.loads(sub.wait_for_topic(f"auricle/{device}/scores", 5).payload)
        assert latest["model_version"] == "0.1.0", "still classifying with the old model"
        health = json.loads(sub.wait_for_topic(f"auricle/{device}/health", 5).payload)
        assert health["errors"] == 0 and health["model_swaps"] == 0
        good = _url("u-good", server.url("v2"), bundle.sha256(models["v2"].read_bytes()))
        _install(mosquitto, device, good)
        assert answer(sub, device, "u-good")["last"]["result"] == "installed", "the URL path works too"
        broker = ["--broker", f"{mosquitto.host}:{mosquitto.port}", "--device", device, "--timeout", "20"]
        capsys.readouterr()
        assert cli_main(["model", "push", str(models["old"]), *broker]) == 1, "older: refused"
        row = _table_row(capsys.readouterr().out, device)
        assert row[:4] == [device, "refused", "0.0.9", "0.2.0"], "the pushed version, and what the device runs"
        bumped = tmp_path / "v2-0.2.1.auricle"
        sign = ["model", "sign", str(models["v2"]), "--key", str(keys["key"]), "--version", "0.2.1", "-o", str(bumped)]
        assert cli_main(sign) == 0
        assert cli_main(["model", "push", str(bumped), *broker]) == 0, "a new version of the same model is taken"
        assert _table_row(capsys.readouterr().out, device)[:4] == [device, "installed", "0.2.1", "0.2.1"]
        assert cli_main(["model", "push", str(models["old"]), *broker, "--force"]) == 0, "older: unless forced"
        assert daemon.terminate(15) == 0
    assert "Traceback" not in daemon.stderr


def test_no_valid_model_keeps_running_and_takes_the_next_good_bundle(
    tmp_path: Path,
    models: dict[str, Path],
    clip: Path,
    keys: dict[str, Path],
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    store = ModelStore(tmp_path / "models")
    raw = models["v1"].read_bytes()
    entry = store.put(raw, bundle.parse_bundle(raw, "v1").manifest, bundle.sha256(raw))
    store.switch(Pointer(active=entry))
    store.path_of(entry).write_bytes(raw[:-10])  # the installed model rots on disk
    broken = tmp_path / "broken.auricle"
    broken.write_bytes(b"not a bundle either")
    config, device = daemon_config(tmp_path, model=broken, clip=clip, broker=mosquitto, pub=keys["pub"])
    sub = subscriber_factory(f"auricle/{device}/#")
    with Daemon(config) as daemon:
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"online", 30, "online")
        first = state(sub.wait_for_topic(f"auricle/{device}/model/state", 10))
        assert first["active"] is None
        assert "sha256 changed on disk" in first["problem"] and "not a zip" in first["problem"], first
        problem = sub.wait_for(
            lambda m: m.topic.endswith("/status/reason") and b"no usable model" in m.payload, 10, "Problem sensor on"
        )
        assert json.loads(problem.payload)["reason"] == first["problem"]
        retained = _retained(mosquitto, subscriber_factory, f"auricle/{device}/status/reason")
        assert retained is not None and b"no usable model" in retained, "Home Assistant sees it when it connects"
        health = json.loads(sub.wait_for_topic(f"auricle/{device}/health", 10).payload)
        assert health["model"] is None and health["model_version"] == "none"
        done = answer(sub, device, _install(mosquitto, device, models["v2"].read_bytes()))
        assert done["last"]["result"] == "installed" and done["problem"] is None
        sub.wait_for(
            lambda m: m.topic.endswith("/status/reason") and json.loads(m.payload)["reason"] is None, 10, "Problem off"
        )
        sub.wait_for(lambda m: m.topic.endswith("/scores") and b'"0.2.0"' in m.payload, 10, "scores from 0.2.0")
        assert daemon.terminate(15) == 0
    assert "Traceback" not in daemon.stderr
    assert not store.pointer().trial, "nothing to fall back to: trusted at once, so a restart keeps it"


def _cut_short(store: ModelStore, bundle_path: Path, pub: Path) -> bytes:
    """``state.json`` as an install leaves it when the daemon dies after the checks, before the switch."""
    from support.ota_driver import Host

    from edge.update.checks import Policy
    from edge.update.request import Request
    from edge.update.updater import Updater

    seen: list[bytes] = []

    class Dies(Host):
        def check_fits(self, classifier: Any) -> None:
            seen.append((store.root / "state.json").read_bytes())
            raise SystemError("killed here")

    policy = Policy(public_key=str(pub), latency_budget_ms=5000)
    Updater(store, policy, Dies(bundle_path)).handle(
        Request(action="install", id="u-cut", payload=bundle_path.read_bytes())
    )
    assert seen
    return seen[0]


def test_an_install_cut_short_by_a_restart_is_logged_at_start(
    tmp_path: Path,
    models: dict[str, Path],
    clip: Path,
    keys: dict[str, Path],
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    store = ModelStore(tmp_path / "models")
    (store.root / "state.json").write_bytes(_cut_short(store, models["v2"], keys["pub"]))
    config, device = daemon_config(tmp_path, model=models["v1"], clip=clip, broker=mosquitto, pub=keys["pub"])
    sub = subscriber_factory(f"auricle/{device}/model/state")
    with Daemon(config) as daemon:
        last = state(sub.wait_for_topic(f"auricle/{device}/model/state", 30))["last"]
        assert (last["result"], last["version"], last["id"]) == ("interrupted", "0.2.0", "u-cut"), last
        assert daemon.terminate(15) == 0
    warning = [line for line in daemon.stderr.splitlines() if "cut short by a restart" in line]
    assert len(warning) == 1 and "WARNING" in warning[0], daemon.stderr
    assert "the install of tones 0.2.0 (request u-cut)" in warning[0] and "the model from before stays" in warning[0]
