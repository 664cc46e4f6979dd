"""``auricle model push``'s table: what each device answered, and a note when their events may differ."""

from __future__ import annotations

import pytest

from edge.cli.push import _Answers, _report


def _answers(runtimes: dict[str, str | None]) -> _Answers:
    answers = _Answers("auricle", "id", "house", expected=set(runtimes))
    for device, runtime in runtimes.items():
        answers.answers[device] = {
            "result": "installed", "reason": "esc50 5.0.0 active", "active": {"version": "5.0.0"}, "runtime": runtime,
        }  # fmt: skip
    return answers


def test_devices_on_different_xnnpack_releases_get_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    runtimes = {"attic": "ai-edge-litert 1.4.0, xnnpack kernels", "kitchen": "ai-edge-litert 2.3.0, xnnpack kernels"}
    assert _report(_answers(runtimes), "5.0.0") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["device", "result", "version", "running", "runtime", "reason"]
    assert out[1].startswith("attic    installed  5.0.0    5.0.0    ai-edge-litert 1.4.0, xnnpack  esc50"), out
    assert out[-1].startswith(
        "note: XNNPACK on 2 runtime releases (ai-edge-litert 1.4.0, xnnpack; ai-edge-litert 2.3.0"
    )
    assert "model.kernels: builtin" in out[-1]


@pytest.mark.parametrize(
    "runtimes",
    [
        {"attic": "ai-edge-litert 1.4.0, builtin kernels", "kitchen": "ai-edge-litert 2.3.0, builtin kernels"},
        {"attic": "ai-edge-litert 2.3.0, xnnpack kernels", "kitchen": "ai-edge-litert 2.3.0, xnnpack kernels"},
        {"attic": "ai-edge-litert 2.3.0, xnnpack kernels", "kitchen": None},  # an older daemon says nothing
    ],
    ids=["builtin everywhere", "one release", "one unknown"],
)
def test_no_note_where_events_agree(runtimes: dict[str, str | None], capsys: pytest.CaptureFixture[str]) -> None:
    assert _report(_answers(runtimes), "5.0.0") == 0
    out = capsys.readouterr().out
    assert "note:" not in out and len(out.splitlines()) == 3, out
