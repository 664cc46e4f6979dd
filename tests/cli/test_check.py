"""``auricle run --check``: what the daemon would run, the update keys, the state directory (read only)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from support.models import tone_bundle

from edge.cli import main as cli
from edge.model import bundle
from edge.model.bundle import read_bundle
from edge.model.runtime import runtime_version
from edge.update.modelstore import ModelStore, Pointer
from kit.broker import Mosquitto, free_port


def _config(tmp_path: Path, model: Path, **model_keys: str) -> Path:
    extra = "".join(f"  {k}: {v}\n" for k, v in model_keys.items())
    path = tmp_path / "config.yaml"
    path.write_text(f"model:\n  path: {model}\n  state_dir: {tmp_path / 'models'}\n{extra}mqtt:\n  host: null\n")
    return path


def _check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # what building the test bundles printed
    rc = cli.main(["run", "--config", str(config), "--check"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_names_the_installed_model_that_runs_instead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configured = tone_bundle(tmp_path / "a.auricle")
    config = _config(tmp_path, configured, allow_unsigned="true")
    rc, out, _ = _check(config, capsys)
    assert rc == 0
    assert "config OK: model tones 0.1.0" in out
    assert (
        f"updates: unsigned bundles accepted (model.allow_unsigned); nothing installed in {tmp_path / 'models'}" in out
    )

    installed = tone_bundle(tmp_path / "b.auricle", version="0.2.0")
    raw = installed.read_bytes()
    store = ModelStore(tmp_path / "models")
    entry = store.put(raw, read_bundle(installed).manifest, bundle.sha256(raw))
    store.switch(Pointer(active=entry))
    before = sorted(p.name for p in (tmp_path / "models").rglob("*"))
    rc, out, _ = _check(config, capsys)
    assert rc == 0 and "installed tones 0.2.0 in" in out and "runs instead of the model above" in out
    assert sorted(p.name for p in (tmp_path / "models").rglob("*")) == before  # read only

    store.path_of(entry).unlink()
    rc, out, _ = _check(config, capsys)
    assert rc == 0 and f"but {store.path_of(entry)} is missing" in out


def test_check_refuses_a_bad_update_key_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "update.pem"
    bad.write_text("not a key\n")
    config = _config(tmp_path, tone_bundle(tmp_path / "a.auricle"), update_keys=f"[{bad}]")
    rc, out, err = _check(config, capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "not a PEM key" in err


def test_check_counts_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public = tmp_path / "update.pub"
    public.write_bytes(bundle.generate_keypair()[1])
    config = _config(tmp_path, tone_bundle(tmp_path / "a.auricle"), update_keys=f"[{public}]")
    rc, out, _ = _check(config, capsys)
    assert rc == 0 and "updates: bundles signed by one of 1 key(s);" in out


def test_check_and_model_info_name_the_model_the_daemon_starts_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tone_bundle(tmp_path / "a.auricle"), allow_unsigned="true")
    installed = tone_bundle(tmp_path / "b.auricle", version="0.2.0")
    raw = installed.read_bytes()
    store = ModelStore(tmp_path / "models")
    store.switch(Pointer(active=store.put(raw, read_bundle(installed).manifest, bundle.sha256(raw))))

    rc, out, _ = _check(config, capsys)
    assert rc == 0 and "starts with: tones 0.2.0, installed" in out
    assert cli.main(["model", "info", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("tones 0.2.0  ("), "model info shows the installed model, as the daemon"


def test_a_public_key_guards_model_path_but_not_the_shipped_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/ota.md's device config (a key, no model.path) starts on the shipped model; an unsigned
    model.path is refused in one line that says what to do."""
    public = tmp_path / "release.pub"
    public.write_bytes(bundle.generate_keypair()[1])
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(f"model:\n  public_key: {public}\n  state_dir: {tmp_path / 'models'}\n")
    rc, out, err = _check(shipped, capsys)
    assert rc == 0 and "starts with: esc50 " in out and ", shipped" in out, err
    rc, out, err = _check(_config(tmp_path, tone_bundle(tmp_path / "a.auricle"), public_key=str(public)), capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "unsigned, but a public key is configured" in err and "sign it (auricle model sign)" in err


def test_check_tries_the_broker_and_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mosquitto: Mosquitto
) -> None:
    """A broker that takes the connection, and one that is not there: both exit 0 (a broker may come later)."""
    mosquitto.start()
    model = tone_bundle(tmp_path / "a.auricle")
    for port, line in [
        (mosquitto.port, f"broker: connected to {mosquitto.host}:{mosquitto.port}"),
        (refused := free_port(), f"broker: cannot connect to 127.0.0.1:{refused}: connection refused"),
    ]:
        config = _config(tmp_path, model)
        config.write_text(config.read_text().replace("host: null", f"host: 127.0.0.1\n  port: {port}"))
        rc, out, err = _check(config, capsys)
        assert rc == 0, err
        assert out.startswith("config OK: model tones 0.1.0") and f"output MQTT 127.0.0.1:{port}" in out
        assert out.splitlines()[-1].startswith(line), out


def test_check_names_the_runtime_and_its_kernels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet on mixed LiteRT releases needs the same kernels everywhere (README "Supported platforms"):
    --check says which runtime, release and kernels this device would run."""
    model = tone_bundle(tmp_path / "a.auricle")
    rc, out, err = _check(_config(tmp_path, model, allow_unsigned="true", kernels="builtin", threads="2"), capsys)
    here = f"ai-edge-litert {runtime_version('ai-edge-litert')} on {platform.machine()}"
    assert rc == 0 and f"runtime: {here}, builtin kernels, 2 threads\n" in out, err
    rc, out, err = _check(_config(tmp_path, model, allow_unsigned="true"), capsys)
    assert rc == 0 and f"runtime: {here}, xnnpack kernels, 1 thread\n" in out, err
