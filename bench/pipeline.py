"""The whole daemon pipeline, one run, one interpreter thread, a real mosquitto broker:

    .venv/bin/python -m bench.pipeline [--model BUNDLE] [--seconds 60] [--hops 1,2,3,4,5,10]
                                       [--detect-seconds 60] [--hours 1]

1. Real-time factor per inference hop: a generated WAV (noise, tones, sweeps, beeps,
   silence) through FileSource at full speed -> Pipeline -> EventDetector ->
   MqttPublisher -> mosquitto -> a subscriber on '#'.  Target RTF <= 0.01.
2. Per-inference latency p50/p95 (window -> tensor -> invoke -> scores), as the
   daemon's health reports it.  Target p95 <= 5 ms.
3. Detection latency: a real-time paced FileSource (audio time == wall time) of
   bursts; each event's arrival time at the subscriber minus its ``t_audio`` (last
   sample of the deciding hop), at the daemon's block size and at one frame per block.
   Target p95 <= 20 ms.
4. Memory: VmRSS sampled every audio minute while looping the WAV at full speed
   for ``--hours`` of audio.  Target <= 100 MB steady, no growth.

The model: ``--model``, else models/esc50.auricle or edge/models/esc50.auricle (the shipped one, in
the package).  Figures only, never asserts.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.rig import Rig, open_rig
from edge.audio import demo
from edge.audio.sources import FileSource
from edge.daemon.config import AudioConfig
from edge.daemon.replay import hop_scores
from edge.detect.events import EventParams
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from kit.broker import Mosquitto

_LOGGER = logging.getLogger("bench.pipeline")
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "models" / "esc50.auricle", ROOT / "edge" / "models" / "esc50.auricle")
RTF_TARGET, P95_MS_TARGET, DETECT_MS_TARGET, RSS_MB_TARGET = 0.01, 5.0, 20.0, 100.0
GROWTH_MB_PER_H = 0.1
"""Slope below which RSS counts as flat (allocator noise; 1 MB over 10 audio hours)."""
BLOCK = AudioConfig().block_samples
WAIT_S = 10.0


# --- signals -------------------------------------------------------------------------


def _tone(n: int, rate: int, hz: float, amp: float) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(n) / rate)


def _segment(kind: int, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    if kind == 0:  # silence
        return np.zeros(n)
    if kind == 1:  # brown-ish noise at -30..-10 dBFS
        x = np.cumsum(rng.standard_normal(n)) * 0.02
        x -= np.convolve(x, np.ones(801) / 801, mode="same")
        return 10 ** (rng.uniform(-30, -10) / 20) * x / (np.std(x) + 1e-9)
    if kind == 2:  # a chord of 2-3 tones
        return np.asarray(np.sum([_tone(n, rate, rng.uniform(200, 4000), 0.15) for _ in range(rng.integers(2, 4))], 0))
    if kind == 3:  # siren-like sweep
        freq = 1050 + 400 * np.sin(2 * np.pi * t)
        return 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / rate)
    return np.asarray(0.25 * (np.mod(t, 0.25) < 0.12) * np.sign(_tone(n, rate, 2500.0, 1.0)))  # alarm beeps


def realistic(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Segments of 1-4 s: silence, noise, tone chords, sweeps, beeps, over -60 dBFS hiss."""
    rng = np.random.default_rng(seed)
    n_total, parts = round(seconds * rate), list[np.ndarray]()
    while sum(len(p) for p in parts) < n_total:
        parts.append(_segment(int(rng.integers(5)), int(rng.uniform(1.0, 4.0) * rate), rate, rng))
    x = np.concatenate(parts)[:n_total] + 1e-3 * rng.standard_normal(n_total)
    return np.clip(x, -1, 1).astype(np.float32)


# candidates for the detection bursts; edge.audio.demo's are written at 16 kHz
BURSTS: dict[str, Callable[[int, int], np.ndarray]] = {
    "1 kHz tone": lambda n, rate: _tone(n, rate, 1000.0, 0.5),
    "white noise": lambda n, rate: 0.3 * np.random.default_rng(2).standard_normal(n),
    "demo siren": lambda n, rate: demo.siren(n / demo.RATE_HZ)[:n],
    "demo alarm beeps": lambda n, rate: demo.alarm_beeps(n / demo.RATE_HZ)[:n],
}


@dataclass(frozen=True, kw_only=True)
class Bursts:
    """A burst sound repeated: ``off_s`` of hiss, then cycles of ``on_s`` burst + ``off_s`` hiss."""

    kind: str
    on_s: float
    off_s: float

    def samples(self, seconds: float, rate: int) -> np.ndarray:
        on, off = round(self.on_s * rate), round(self.off_s * rate)
        cycles = max(1, int((seconds - self.off_s) // (self.on_s + self.off_s)))
        x = np.concatenate([np.zeros(off)] + [np.concatenate([BURSTS[self.kind](on, rate), np.zeros(off)])] * cycles)
        return (x + 1e-3 * np.random.default_rng(1).standard_normal(len(x))).astype(np.float32)

    def inside(self, t: np.ndarray, margin_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Masks of times at least ``margin_s`` inside a burst / inside a gap (seconds from the start)."""
        period = self.on_s + self.off_s
        phase = np.mod(t - self.off_s, period)
        started = t >= self.off_s
        on = started & (phase >= margin_s) & (phase <= self.on_s)
        off = (started & (phase >= self.on_s + margin_s)) | (~started & (t >= margin_s))
        return on, off


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


# --- measurements --------------------------------------------------------------------


@dataclass
class Replay:
    audio_s: float
    wall_s: float
    cpu_s: float
    stats: dict[str, Any]
    events: int
    received: int
    rss: list[tuple[float, float]] = field(default_factory=list)
    """(audio hours, VmRSS MB) every audio minute."""


def proc_mb(field: str = "VmRSS") -> float:
    """A memory figure of this process from /proc/self/status, in MB (1e6 bytes)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    return kb * 1024 / 1e6


def replay(rig: Rig, wav: Path, hop: int | None, audio_s: float, sample_rss: bool = False) -> Replay:
    """FileSource at full speed (looped) through the daemon's wiring for ``audio_s`` of audio."""
    pipe, det = rig.pipeline(hop)
    source = FileSource(wav, rig.rate, realtime=False, loop=True, block_samples=BLOCK)
    stop, n, rss, before = threading.Event(), 0, [], rig.tap.counts["event"]
    target_n, minute_n, next_sample = round(audio_s * rig.rate), 60 * rig.rate, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for block in source.blocks(stop):
        pipe.feed(block.samples, block.t_end)
        n += len(block.samples)
        if sample_rss and n >= next_sample:
            rss.append((n / rig.rate / 3600, proc_mb()))
            next_sample += minute_n
        if n >= target_n:
            stop.set()
    pipe.finish()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rig.sent += det.events
    received = rig.tap.wait_events(rig.sent) - before
    return Replay(n / rig.rate, wall, cpu, pipe.stats.snapshot(), det.events, received, rss)


def pick_bursts(rig: Rig) -> tuple[Bursts, str, float, float, float]:
    """The burst sound and label whose scores straddle the label's own threshold by the widest margin.

    Returns the bursts, the label, its mean score inside bursts and between them, and the margin
    (> 0: the bundle's thresholds make events on their own)."""
    m = rig.clf.manifest
    frame_s = m.features.hop_samples / m.features.sample_rate
    window_s, hop_s = m.window_frames * frame_s, m.hop_frames * frame_s
    ev = EventParams()
    on_s = round(window_s + 0.3, 2)
    off_s = round(ev.hold_s + window_s + ev.smoothing_hops * hop_s + 0.3, 2)
    thr = np.array([m.score_thresholds.get(x, 0.5) for x in m.score_labels])  # the scores' labels, optional ones too
    best = (-np.inf, "", 0, np.zeros(1), np.zeros(1))
    for kind in BURSTS:
        bursts = Bursts(kind=kind, on_s=on_s, off_s=off_s)
        x = bursts.samples(3 * (on_s + off_s), rig.rate)
        # daemon-sized blocks: one huge block would inflate the peak RSS
        times, scores = hop_scores(rig.clf, (x[i : i + BLOCK] for i in range(0, len(x), BLOCK)))
        on, off = bursts.inside(times, window_s)  # the whole window inside a burst / a gap
        hi, lo = scores[on].mean(axis=0), scores[off].mean(axis=0)
        margin = np.minimum(hi - thr, thr - lo)
        i = int(np.argmax(margin))
        if margin[i] > best[0]:
            best = (float(margin[i]), kind, i, hi, lo)
    margin, kind, i, hi, lo = best
    return Bursts(kind=kind, on_s=on_s, off_s=off_s), m.score_labels[i], float(hi[i]), float(lo[i]), margin


def detect(rig: Rig, wav: Path, block: int, params: EventParams) -> tuple[np.ndarray, np.ndarray, int]:
    """Real-time replay; per event: arrival - t_audio, and arrival - the block's hand-over (ms)."""
    pipe, det = rig.pipeline(None, params)
    source = FileSource(wav, rig.rate, realtime=True, block_samples=block)
    ends, handed = [], []
    rig.tap.arrivals.clear()
    rig.tap.keep = True
    for b in source.blocks(threading.Event()):
        handed.append(time.time())
        ends.append(b.t_end)
        pipe.feed(b.samples, b.t_end)
    pipe.finish()
    rig.sent += det.events
    rig.tap.wait_events(rig.sent)
    rig.tap.keep = False
    total, after = [], []
    for arrived, t_audio, _kind in rig.tap.arrivals:
        i = min(bisect.bisect_left(ends, t_audio - 1e-5), len(ends) - 1)
        total.append(arrived - t_audio)
        after.append(arrived - handed[i])
    return 1e3 * np.array(total), 1e3 * np.array(after), det.events


# --- report --------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def pcts(x: np.ndarray) -> tuple[float, float, float]:
    return (float(np.percentile(x, 50)), float(np.percentile(x, 95)), float(x.max())) if len(x) else (0.0,) * 3


def load_model(arg: Path | None) -> tuple[Path, str]:
    """The bundle to measure and where it came from."""
    if arg is not None:
        return arg, "--model"
    for path in SHIPPED:
        if path.is_file():
            return path, "shipped"
    raise SystemExit(f"bench: no model: pass --model BUNDLE (neither of {', '.join(map(str, SHIPPED))} exists)")


def report_rtf(rig: Rig, wav: Path, seconds: float, hops: list[int]) -> dict[int, Replay]:
    default = rig.clf.manifest.hop_frames
    _LOGGER.info("1. real-time factor, %.0f s of generated audio at full speed, block %d samples", seconds, BLOCK)
    _LOGGER.info("   hop  inferences  events sent/recv  RTF loop  RTF feed  CPU/audio   target <= %.2f", RTF_TARGET)
    runs = {}
    for hop in hops:
        r = runs[hop] = replay(rig, wav, hop, seconds)
        rtf = r.wall_s / r.audio_s
        _LOGGER.info(
            "  %4d%s %10d  %6d/%-6d    %8.5f  %8.5f  %8.5f   %s",
            hop, "*" if hop == default else " ", r.stats["inferences"], r.events, r.received,
            rtf, r.stats["rtf"], r.cpu_s / r.audio_s, verdict(rtf <= RTF_TARGET),
        )  # fmt: skip
    _LOGGER.info("   * the bundle's hop_frames; RTF loop = wall time of source + pipeline + publish / audio time;")
    _LOGGER.info("     RTF feed = the daemon's health 'rtf' (Pipeline.feed only); CPU/audio = process CPU time")
    return runs


def report_latency(runs: dict[int, Replay], hop: int) -> None:
    s = runs[hop].stats
    _LOGGER.info("2. per-inference latency (window -> tensor -> invoke -> scores), hop %d, health's last 2048:", hop)
    _LOGGER.info(
        "   p50 %.3f ms  p95 %.3f ms  (target p95 <= %.0f ms)  %s",
        s["latency_ms_p50"], s["latency_ms_p95"], P95_MS_TARGET, verdict(s["latency_ms_p95"] <= P95_MS_TARGET),
    )  # fmt: skip


def report_detection(rig: Rig, seconds: float) -> None:
    bursts, label, hi, lo, margin = pick_bursts(rig)
    if margin > 0:
        params, how = EventParams(), "bundle thresholds, all labels, every events setting default"
    else:  # the bundle's threshold never separates them: put one midway, for this label only
        params = EventParams(thresholds={label: round((hi + lo) / 2, 3)}, enabled=(label,))
        how = f"only {label!r}, threshold {params.thresholds[label]:.3f} (midway), other events settings default"
    wav = write_wav(rig.tmp / "bursts.wav", bursts.samples(seconds, rig.rate), rig.rate)
    _LOGGER.info(
        "3. detection latency, real-time paced, hop %d: %s bursts (%.2f s on, %.2f s off) for %.0f s; %r scores "
        "%.2f in bursts, %.2f between (threshold %.2f); %s",
        rig.clf.manifest.hop_frames, bursts.kind, bursts.on_s, bursts.off_s, seconds, label, hi, lo,
        rig.clf.manifest.thresholds.get(label, 0.5), how,
    )  # fmt: skip
    _LOGGER.info("   block    events sent/recv  arrival - t_audio p50/p95/max   arrival - block hand-over p50/p95/max")
    for block in dict.fromkeys((BLOCK, rig.clf.manifest.features.hop_samples)):
        total, after, sent = detect(rig, wav, block, params)
        (t50, t95, tmax), (a50, a95, amax) = pcts(total), pcts(after)
        _LOGGER.info(
            "   %5d  %6d/%-6d      %6.1f /%6.1f /%6.1f ms         %6.1f /%6.1f /%6.1f ms   %s",
            block, sent, len(total), t50, t95, tmax, a50, a95, amax,
            verdict(len(total) > 0 and t95 <= DETECT_MS_TARGET),
        )  # fmt: skip
    _LOGGER.info(
        "   target: arrival - t_audio p95 <= %.0f ms; the block's hand-over is when the source yields it,",
        DETECT_MS_TARGET,
    )
    _LOGGER.info("   so the difference is audio waiting for its block to fill (block %d = the daemon's default)", BLOCK)


def report_memory(r: Replay) -> None:
    h, mb = np.array(r.rss).T
    steady = h >= 0.1 * h[-1]
    slope = float(np.polyfit(h[steady], mb[steady], 1)[0]) if steady.sum() > 2 else float("nan")
    _LOGGER.info(
        "4. memory (run first, after a 5 s warm-up): %.1f h of audio looped at full speed in %.0f s (RTF %.5f), "
        "%d RSS samples:",
        r.audio_s / 3600, r.wall_s, r.wall_s / r.audio_s, len(mb),
    )  # fmt: skip
    _LOGGER.info(
        "   VmRSS first %.1f MB, last %.1f MB, max %.1f MB, steady-state median %.1f MB (target <= %.0f MB)  %s",
        mb[0], mb[-1], mb.max(), float(np.median(mb[steady])), RSS_MB_TARGET, verdict(mb.max() <= RSS_MB_TARGET),
    )  # fmt: skip
    _LOGGER.info(
        "   slope after the first 10%%: %+.3f MB per audio hour (flat if |slope| < %.1f)  %s; events %d sent/%d recv",
        slope, GROWTH_MB_PER_H, verdict(abs(slope) < GROWTH_MB_PER_H), r.events, r.received,
    )  # fmt: skip
    _LOGGER.info(
        "   inference latency over the last 2048: p50 %.3f ms, p95 %.3f ms; process peak VmHWM %.1f MB at the end",
        r.stats["latency_ms_p50"], r.stats["latency_ms_p95"], proc_mb("VmHWM"),
    )  # fmt: skip


def closing_note(runs: dict[int, Replay], default: int, frame_s: float) -> None:
    meets = sorted(h for h, r in runs.items() if r.wall_s / r.audio_s <= RTF_TARGET)
    _LOGGER.info(
        "note: smallest hop with RTF <= %.2f: %s; the bundle's hop %d %s",
        RTF_TARGET, meets[0] if meets else "none measured", default, "meets it" if default in meets else "misses it",
    )  # fmt: skip
    # the feed time is per-frame work (front end, ring) plus per-hop work (inference, events, level)
    hops = np.array(sorted(runs), dtype=np.float64)
    per_hop_cost, per_frame = np.polyfit(1 / hops, [runs[int(h)].stats["rtf"] for h in hops], 1)
    _LOGGER.info(
        "      least-squares fit of RTF feed over the hops: %.5f + %.5f / hop, i.e. %.1f us of work per "
        "frame (front end, ring) plus %.1f us per hop (inference, events, level)",
        per_frame, per_hop_cost, per_frame * frame_s * 1e6, per_hop_cost * frame_s * 1e6,
    )  # fmt: skip


def header(model: Path, origin: str, clf: Classifier) -> None:
    m = clf.manifest
    _LOGGER.info("machine: %s, %d CPUs, load average %.2f %.2f %.2f", cpu_name(), os.cpu_count(), *os.getloadavg())
    _LOGGER.info("python %s, runtime %s, 1 interpreter thread", platform.python_version(), clf.runtime)
    _LOGGER.info("model: %s (%s)", model, origin)
    _LOGGER.info(
        "  %s %s, %d labels, input %s %s, window %d frames, hop_frames %d, %d Hz",
        m.name, m.version, len(m.labels), m.input.dtype, list(m.input.shape), m.window_frames, m.hop_frames,
        m.features.sample_rate,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per RTF run (s)")
    parser.add_argument("--hops", default="1,2,3,4,5,10", help="inference hops to time, plus the bundle's")
    parser.add_argument("--detect-seconds", type=float, default=60.0, help="real-time audio per block size (s)")
    parser.add_argument("--hours", type=float, default=1.0, help="audio replayed for the memory run (h)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    _LOGGER.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="auricle-bench-") as tmp_name, Mosquitto() as mosquitto:
        tmp = Path(tmp_name)
        model, origin = load_model(args.model)
        clf = Classifier(read_bundle(model), threads=1)
        header(model, origin, clf)
        rig = open_rig(clf, mosquitto.port, tmp)
        try:
            run_all(rig, args)
        finally:
            rig.publisher.close()
            rig.tap.close()
    return 0


def run_all(rig: Rig, args: argparse.Namespace) -> None:
    default = rig.clf.manifest.hop_frames
    hops = sorted({int(h) for h in args.hops.split(",")} | {default})
    wav = write_wav(rig.tmp / "mix.wav", realistic(args.seconds, rig.rate), rig.rate)
    _LOGGER.info(
        "VmRSS after loading the model, connecting and writing the test WAV: %.1f MB (peak so far %.1f MB)",
        proc_mb(), proc_mb("VmHWM"),
    )  # fmt: skip
    replay(rig, wav, default, 5.0)  # warm-up: caches, allocator, paho
    # memory first, so that the RSS is the daemon's wiring and not what the other phases left behind
    memory = replay(rig, wav, None, args.hours * 3600, sample_rss=True)
    runs = report_rtf(rig, wav, args.seconds, hops)
    report_latency(runs, default)
    report_detection(rig, args.detect_seconds)
    report_memory(memory)
    _LOGGER.info("subscriber received per kind: %s", dict(sorted(rig.tap.counts.items())))
    _LOGGER.info("load average at the end: %.2f %.2f %.2f (2 cores shared with others)", *os.getloadavg())
    closing_note(runs, default, rig.clf.manifest.features.hop_samples / rig.rate)


if __name__ == "__main__":
    sys.exit(main())
