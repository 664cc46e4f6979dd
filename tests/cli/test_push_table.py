"""``auricle model push``'s table: what each device answered, and a note when their events may differ
(README "Supported platforms": the builtin kernels agree across releases on one machine type, XNNPACK
does not across releases)."""

from __future__ import annotations

import pytest

from edge.cli.push import _Answers, _report
from edge.model.runtime import KERNELS, runtime_line, same_arithmetic


def _answers(runtimes: dict[str, str | None]) -> _Answers:
    answers = _Answers("auricle", "id", "house", expected=set(runtimes))
    for device, runtime in runtimes.items():
        answers.answers[device] = {
            "result": "installed", "reason": "esc50 5.0.0 active", "active": {"version": "5.0.0"}, "runtime": runtime,
        }  # fmt: skip
    return answers


@pytest.mark.parametrize(
    ("runtimes", "kinds"),
    [
        (
            ("ai-edge-litert 1.4.0 on aarch64, xnnpack kernels", "ai-edge-litert 2.3.0 on aarch64, xnnpack kernels"),
            "ai-edge-litert 1.4.0 xnnpack on aarch64; ai-edge-litert 2.3.0 xnnpack on aarch64",
        ),
        (
            ("ai-edge-litert 2.3.0 on aarch64, builtin kernels", "ai-edge-litert 2.3.0 on x86_64, builtin kernels"),
            "builtin on aarch64; builtin on x86_64",
        ),
        (
            ("ai-edge-litert 2.3.0 on aarch64, builtin kernels", "ai-edge-litert 2.3.0 on aarch64, xnnpack kernels"),
            "ai-edge-litert 2.3.0 xnnpack on aarch64; builtin on aarch64",
        ),
    ],
    ids=["two xnnpack releases", "two machine types", "two kernel sets"],
)
def test_devices_that_may_disagree_get_a_note(
    runtimes: tuple[str, str], kinds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(_answers(dict(zip(("attic", "kitchen"), runtimes, strict=True))), "5.0.0") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["device", "result", "version", "running", "runtime", "reason"]
    assert out[1].startswith(f"attic    installed  5.0.0    5.0.0    {runtimes[0].removesuffix(' kernels')}  esc50")
    assert out[-1].startswith(
        f"note: the devices' events may differ by a hop: they run 2 kinds of int8 arithmetic ({kinds})"
    )


@pytest.mark.parametrize(
    "runtimes",
    [
        ("ai-edge-litert 1.4.0 on aarch64, builtin kernels", "ai-edge-litert 2.3.0 on aarch64, builtin kernels"),
        ("ai-edge-litert 2.3.0 on aarch64, xnnpack kernels", "ai-edge-litert 2.3.0 on aarch64, xnnpack kernels"),
        ("ai-edge-litert 2.3.0 on aarch64, xnnpack kernels", None),  # a daemon that does not say
        ("ai-edge-litert 2.3.0 on aarch64, xnnpack kernels", "ai-edge-litert 2.3.0, xnnpack kernels"),  # nor how
    ],
    ids=["builtin on two releases", "one release", "one unknown", "one unparsed"],
)
def test_no_note_where_events_agree(runtimes: tuple[str, str | None], capsys: pytest.CaptureFixture[str]) -> None:
    assert _report(_answers(dict(zip(("attic", "kitchen"), runtimes, strict=True))), "5.0.0") == 0
    out = capsys.readouterr().out
    assert "note:" not in out and len(out.splitlines()) == 3, out


def test_the_line_a_device_states_is_the_line_push_reads() -> None:
    for kernels in KERNELS:
        line = runtime_line("ai-edge-litert", kernels)  # what model/state carries (Classifier.runtime_text)
        assert same_arithmetic(line) is not None, line
