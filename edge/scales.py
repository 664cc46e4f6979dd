"""Perceptual frequency scales and triangular filterbanks.

Each scale maps Hz to a warped axis and back.  Band edges are spaced evenly
on the warped axis; by default the triangles are drawn in Hz and area-normalised,
the same construction as Slaney's Auditory Toolbox and librosa's Mel filters.
Drawing them linear on the warped axis instead, with peak 1, is TensorFlow's
``linear_to_mel_weight_matrix`` (YAMNet's front end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

_SLANEY_LIN_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_LIN_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _slaney_to_warped(hz: Array) -> Array:
    log_part = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, 1e-10) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log_part, hz / _SLANEY_LIN_HZ_PER_MEL)


def _slaney_to_hz(mel: Array) -> Array:
    log_part = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, log_part, mel * _SLANEY_LIN_HZ_PER_MEL)


def _htk_to_warped(hz: Array) -> Array:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _htk_to_hz(mel: Array) -> Array:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _bark_to_warped(hz: Array) -> Array:
    """Traunmueller (1990) critical-band rate."""
    return 26.81 * hz / (1960.0 + hz) - 0.53


def _bark_to_hz(z: Array) -> Array:
    return 1960.0 * (z + 0.53) / (26.28 - z)


def _erb_to_warped(hz: Array) -> Array:
    """Glasberg and Moore (1990) ERB-rate."""
    return 21.4 * np.log10(1.0 + 0.00437 * hz)


def _erb_to_hz(e: Array) -> Array:
    return (10.0 ** (e / 21.4) - 1.0) / 0.00437


SCALES: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "mel_slaney": (_slaney_to_warped, _slaney_to_hz),
    "mel_htk": (_htk_to_warped, _htk_to_hz),
    "bark": (_bark_to_warped, _bark_to_hz),
    "erb": (_erb_to_warped, _erb_to_hz),
    "log": (np.log, np.exp),
}


def band_edges_hz(scale: str, f_min_hz: float, f_max_hz: float, n_bands: int) -> Array:
    """``n_bands + 2`` edge frequencies, evenly spaced on ``scale``."""
    to_warped, to_hz = SCALES[scale]
    lo, hi = to_warped(np.array([f_min_hz, f_max_hz], dtype=np.float64))
    return to_hz(np.linspace(lo, hi, n_bands + 2))


def triangular(
    fft_hz: Array, edges_hz: Array, *, norm: Literal["area", "peak"] = "area", warped_on: str | None = None
) -> Array:
    """``(n_bands, n_bins)`` triangles with the given edges.

    ``norm='area'`` scales each band by ``2 / (upper - lower edge in Hz)`` (Slaney), ``'peak'`` leaves
    its peak at 1.  ``warped_on`` names a scale of :data:`SCALES` to draw the triangles linear on that
    scale's axis rather than in Hz.
    """
    if warped_on is not None:
        to_warped = SCALES[warped_on][0]
        with np.errstate(divide="ignore"):  # 'log' sends the 0 Hz bin to -inf, i.e. weight 0
            weights = _triangles(to_warped(fft_hz), to_warped(edges_hz))
    else:
        weights = _triangles(fft_hz, edges_hz)
    if norm == "area":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def _triangles(axis: Array, edges: Array) -> Array:
    """Peak-1 triangles, piecewise linear in the units of ``axis`` and ``edges``."""
    n_bands = len(edges) - 2
    widths = np.diff(edges)
    ramps = edges[:, None] - axis[None, :]
    weights = np.zeros((n_bands, len(axis)))
    for i in range(n_bands):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    return weights
