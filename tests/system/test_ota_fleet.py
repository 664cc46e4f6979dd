"""A fleet push through a broker cluster: ``auricle model push --group`` on broker A reaches daemons on broker B.

The two brokers are real mosquitto instances on loopback joined by mosquitto's
own bridge (a ``connection`` section), which forwards ``auricle/#`` both ways:
the install command from A to B, the devices' ``model/state`` from B to A.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from support.daemon import Daemon, tone_wav, write_config
from support.models import tone_bundle
from support.ota import daemon_config, keypair, signed_copy, state

from edge.cli.main import main as cli_main
from kit.broker import Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration
GROUP = "kitchen-fleet"


@pytest.fixture
def brokers() -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """(A, B): A bridges auricle/# to B in both directions."""
    with ExitStack() as stack:
        b = stack.enter_context(Mosquitto())
        a = Mosquitto()
        with a.config_path.open("a") as conf:
            conf.write(
                f"connection to-b\naddress {b.host}:{b.port}\ntopic auricle/# both 1\n"
                "cleansession true\nrestart_timeout 1\n"
            )
        stack.enter_context(a)
        probe = stack.enter_context(_subscriber(a, "auricle/bridge-probe"))
        for _ in range(50):  # the bridge connects a moment after A starts
            publish(b.host, b.port, "auricle/bridge-probe", b"hello")
            try:
                probe.wait_for(lambda m: m.payload == b"hello", 0.2, "probe through the bridge")
                break
            except AssertionError:
                continue
        else:
            pytest.fail("the bridge from A to B never came up")
        yield a, b


class _subscriber:
    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.sub = Subscriber(broker.host, broker.port, topic)

    def __enter__(self) -> Subscriber:
        return self.sub

    def __exit__(self, *_exc: object) -> None:
        self.sub.close()


def test_push_to_a_group_through_a_bridged_broker(
    tmp_path: Path, brokers: tuple[Mosquitto, Mosquitto], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = brokers
    key, pub = keypair(tmp_path, "release")
    v1 = signed_copy(tone_bundle(tmp_path / "v1.plain", version="0.1.0"), tmp_path / "v1.auricle", key)
    v2 = signed_copy(
        tone_bundle(tmp_path / "v2.plain", version="0.2.0", tones_hz=(1000.0, 2000.0)), tmp_path / "v2.auricle", key
    )
    clip = tone_wav(tmp_path / "tone.wav")
    devices = []
    with ExitStack() as stack, _subscriber(a, "auricle/+/model/state") as states:
        for i, groups in enumerate([[GROUP], [GROUP, "attic"], ["attic"]]):
            folder = tmp_path / f"d{i}"
            folder.mkdir()
            config, device = daemon_config(folder, model=v1, clip=clip, broker=b, pub=pub)
            data = yaml.safe_load(config.read_text())
            data["mqtt"]["groups"] = groups
            write_config(config, data)
            stack.enter_context(Daemon(config))
            devices.append(device)
        for device in devices:  # every device's state has crossed the bridge to A
            states.wait_for(lambda m, d=device: m.topic == f"auricle/{d}/model/state", 30, f"{device} state on A")

        capsys.readouterr()  # TensorFlow's chatter from making the models
        argv = ["model", "push", str(v2), "--broker", f"{a.host}:{a.port}", "--group", GROUP, "--timeout", "30"]
        assert cli_main(argv) == 0
        table = capsys.readouterr().out
        rows = {line.split()[0]: line.split()[1:3] for line in table.splitlines() if line.startswith(tuple(devices))}
        assert rows == {devices[0]: ["installed", "0.2.0"], devices[1]: ["installed", "0.2.0"]}, table
        assert table.count(", xnnpack  ") == 2 and "note:" not in table, "one runtime release: nothing to note"

        outsider = [state(m) for m in states.messages(f"auricle/{devices[2]}/model/state")]
        assert outsider[-1]["active"]["version"] == "0.1.0" and outsider[-1]["last"] is None, "not in the group"

        assert cli_main(argv) == 0, "the same bundle again: a no-op that says so"
        assert table.count("installed") == 2 and capsys.readouterr().out.count("unchanged") == 2

        lost = ["model", "push", str(v2), "--broker", f"{a.host}:{a.port}", "--device", "nobody", "--timeout", "2"]
        assert cli_main(lost) == 1
        assert "nobody  no answer" in capsys.readouterr().out
