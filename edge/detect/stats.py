"""Counters and timings for the ``health`` message.

The worker writes, the health timer reads a snapshot; plain attribute writes
and one preallocated latency ring keep the per-hop cost to a few stores.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np

LATENCY_RING = 2048
"""Inference latencies kept for the percentiles (the most recent ones)."""


class PipelineStats:
    """What the pipeline has done so far."""

    def __init__(self) -> None:
        self.frames = 0
        self.hops = 0
        self.gated = 0
        self.errors = 0
        self.reanchors = 0
        """Times a live source's clock re-anchored the sample clock (dropped blocks, drift)."""
        self.inferences = 0
        self.audio_s = 0.0
        self.busy_s = 0.0
        self._latency_s = np.zeros(LATENCY_RING, dtype=np.float64)

    def add_latency(self, seconds: float) -> None:
        """Record one inference (window -> tensor -> invoke -> scores)."""
        self._latency_s[self.inferences % LATENCY_RING] = seconds
        self.inferences += 1

    def add_audio(self, audio_s: float, busy_s: float) -> None:
        """Record one block: its duration and the processing time it took."""
        self.audio_s += audio_s
        self.busy_s += busy_s

    def snapshot(self) -> dict[str, Any]:
        """Counters, latency percentiles (ms) and real-time factor."""
        n = min(self.inferences, LATENCY_RING)
        lat = self._latency_s[:n].copy() * 1000.0
        p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if n else (0.0, 0.0)
        return {
            "frames": self.frames,
            "hops": self.hops,
            "inferences": self.inferences,
            "gated": self.gated,
            "errors": self.errors,
            "reanchors": self.reanchors,
            "audio_s": round(self.audio_s, 3),
            "latency_ms_p50": round(p50, 3),
            "latency_ms_p95": round(p95, 3),
            "rtf": round(self.busy_s / self.audio_s, 5) if self.audio_s else 0.0,
        }


class ProcessMeter:
    """CPU share since the previous reading and the resident set size."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self.started = time.time()

    def read(self) -> dict[str, float]:
        """``cpu_percent`` (of one core, since the last call), ``rss_mb``, ``uptime_s``."""
        wall, cpu = time.monotonic(), time.process_time()
        share = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-9)
        self._wall, self._cpu = wall, cpu
        return {
            "cpu_percent": round(share, 1),
            "rss_mb": round(rss_bytes() / 1e6, 1),
            "uptime_s": round(time.time() - self.started, 1),
        }


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
