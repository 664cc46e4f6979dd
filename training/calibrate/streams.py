"""The streams thresholds are counted on: per-hop scores of background, and of clips that hold one labelled sound.

They are computed elsewhere, through the daemon's own pipeline (training/calibrate/replay.py, or a benchmark's
recording); the search (training/calibrate/search.py) only counts the events they raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BackgroundStream:
    """Scores of a stream in which none of the labels occurs."""

    scores: npt.NDArray[np.floating]
    """(hops, labels), one row per hop in stream order."""
    duration_s: float
    """Seconds of audio the stream covers (counted as exposure)."""


@dataclass(frozen=True)
class PositiveClip:
    """Scores of a stream holding one labelled sound; its exposure is hops x hop_s."""

    scores: npt.NDArray[np.floating]
    """(hops, labels)."""
    label: int
    """Index of the sound's label among the score columns."""
    start_s: float
    """Seconds from the stream's start to the sound's start."""
    end_s: float
    """... to the sound's end."""
