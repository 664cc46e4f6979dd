"""The one spectrogram front end: samples -> causal frames -> filterbank -> dB.

Training imports this module and the device runs it, so what the model sees on
the Pi is what it was trained on.  Batch and streaming share one per-frame
kernel (:class:`FrontEnd`), which is why they agree bitwise for any chunking.

Conventions (see docs/features.md):
- frame ``t`` covers samples ``[t*hop, t*hop + window)``: causal, no centre
  padding, periodic Hann window, zero-padded to ``n_fft`` for the ``rfft``;
- band energies are one matrix product with a triangular filterbank on the
  chosen frequency scale, area-normalised like Slaney's/librosa's Mel filters
  (or peak-1 and drawn linear on the warped axis, as TensorFlow's, for YAMNet);
- ``dB = 10*log10((P + log_offset) / db_ref)`` for power (20*log10 for
  magnitude), clamped to ``[db_floor, db_ceiling]``: a fixed reference, never a
  per-clip maximum.  YAMNet's ``ln(mel + 0.001)`` is such a dB value times
  ``ln(10)/20`` (magnitude, peak-1 bands, ``log_offset=0.001``, ``db_ref=1``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge import scales
from edge.schema import setting

FRONTEND_VERSION = 1
"""Bumped whenever the numbers change for the same parameters."""

Scale = Literal["mel_slaney", "mel_htk", "bark", "erb", "log"]
LATER_FIELDS = ("filter_norm", "triangles", "log_offset")
"""Fields added after bundles shipped: :meth:`FeatureParams.to_dict` leaves them out at their defaults,
so the fingerprints of bundles made before them still match."""
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class FeatureParams:
    """Everything that decides the numbers the front end produces."""

    sample_rate: int = setting(16000, lo=4000, hi=96000, unit="Hz")
    window_samples: int = setting(400, lo=16, hi=16384, unit="samples per frame")
    hop_samples: int = setting(160, lo=1, hi=16384, unit="samples between frames")
    n_fft: int = setting(512, lo=16, hi=32768, unit="FFT points, >= window_samples")
    n_bands: int = setting(64, lo=1, hi=512, unit="filterbank bands")
    f_min_hz: float = setting(125.0, lo=0.0, hi=48000.0, unit="Hz")
    f_max_hz: float = setting(7500.0, lo=1.0, hi=48000.0, unit="Hz, <= sample_rate/2")
    scale: Scale = "mel_slaney"
    """Frequency scale of the triangular filterbank."""
    filter_norm: Literal["area", "peak"] = "area"
    """'area': each triangle scaled by 2/(its width in Hz) (Slaney, librosa); 'peak': peak 1 (HTK, TensorFlow)."""
    triangles: Literal["hz", "warped"] = "hz"
    """Triangles drawn linear in Hz (Slaney, librosa) or linear on the scale's warped axis (TensorFlow)."""
    spectrum: Literal["power", "magnitude"] = "power"
    """Power (|X|^2, 10*log10) or magnitude (|X|, 20*log10) spectrum."""
    db_ref: float = setting(1.0, lo=1e-12, hi=1e12, unit="linear reference for 0 dB")
    log_offset: float = setting(0.0, lo=0.0, hi=1e6, unit="linear, added to each band before the log")
    db_floor: float = setting(-100.0, lo=-200.0, hi=0.0, unit="dB, lowest value")
    db_ceiling: float = setting(40.0, lo=-100.0, hi=200.0, unit="dB, highest value")
    smoothing: Literal["none", "median", "gaussian"] = "none"
    """Optional causal image-style denoising over time x frequency."""
    smoothing_frames: int = setting(3, lo=1, hi=32, unit="frames: current and past")
    smoothing_bands: int = setting(3, lo=1, hi=31, unit="bands, odd, centred")
    smoothing_sigma: float = setting(1.0, lo=0.1, hi=16.0, unit="Gaussian sigma, frames and bands")

    def __post_init__(self) -> None:
        if self.n_fft < self.window_samples:
            raise ValueError(f"n_fft ({self.n_fft}) must be >= window_samples ({self.window_samples})")
        if not 0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min_hz < f_max_hz <= sample_rate/2, got {self.f_min_hz}..{self.f_max_hz} "
                f"at {self.sample_rate} Hz"
            )
        if self.scale == "log" and self.f_min_hz <= 0:
            raise ValueError("scale 'log' needs f_min_hz > 0")
        if self.db_floor >= self.db_ceiling:
            raise ValueError(f"db_floor ({self.db_floor}) must be below db_ceiling ({self.db_ceiling})")
        if self.smoothing_bands % 2 == 0:
            raise ValueError(f"smoothing_bands must be odd, got {self.smoothing_bands}")

    def to_dict(self) -> dict[str, object]:
        """Canonical plain-data form (what bundles store); :data:`LATER_FIELDS` only when not default."""
        data = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.name in LATER_FIELDS and data[f.name] == f.default:
                del data[f.name]
        return data

    def frames_end(self, frames: int) -> int:
        """Samples from the stream's start to the end of frame number ``frames`` (counted from 1): what makes
        exactly that many frames, a window of ``frames`` frames included."""
        return (frames - 1) * self.hop_samples + self.window_samples

    def fingerprint(self) -> str:
        """Stable hash of the canonical parameters and the front-end version."""
        canon = json.dumps({"v": FRONTEND_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def periodic_hann(n: int) -> npt.NDArray[np.float64]:
    """Periodic Hann window (the DFT-even one spectral analysis wants)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def filterbank(params: FeatureParams) -> npt.NDArray[np.float64]:
    """The ``(n_fft//2 + 1, n_bands)`` filterbank matrix for ``params``."""
    fft_hz = np.fft.rfftfreq(params.n_fft, d=1.0 / params.sample_rate)
    edges = scales.band_edges_hz(params.scale, params.f_min_hz, params.f_max_hz, params.n_bands)
    warped_on = params.scale if params.triangles == "warped" else None
    weights = scales.triangular(fft_hz.astype(np.float64), edges, norm=params.filter_norm, warped_on=warped_on)
    return weights.T.copy()


class FrontEnd:
    """Streaming front end: feed any chunks, get the frames they complete."""

    def __init__(self, params: FeatureParams) -> None:
        self.params = params
        self._window = periodic_hann(params.window_samples)
        self._fb = filterbank(params)
        self._db_scale = 10.0 if params.spectrum == "power" else 20.0
        self._db_offset = self._db_scale * np.log10(params.db_ref)
        self._smoother = _Smoother(params) if params.smoothing != "none" else None
        self._pending = np.zeros(0, dtype=np.float64)

    def reset(self) -> None:
        """Forget buffered samples and smoothing history."""
        self._pending = np.zeros(0, dtype=np.float64)
        if self._smoother is not None:
            self._smoother.reset()

    def process_streaming(self, samples: npt.ArrayLike) -> Floats:
        """Consume ``samples`` (mono) and return the ``(n_new, n_bands)`` new frames."""
        buf = np.concatenate((self._pending, as_float64(samples)))
        win, hop = self.params.window_samples, self.params.hop_samples
        n = 0 if len(buf) < win else 1 + (len(buf) - win) // hop
        out = np.empty((n, self.params.n_bands), dtype=np.float32)
        for t in range(n):
            out[t] = self._frame(buf[t * hop : t * hop + win])
        self._pending = buf[n * hop :]
        return out

    def _frame(self, segment: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        spec = np.fft.rfft(segment * self._window, n=self.params.n_fft)
        mag = spec.real * spec.real + spec.imag * spec.imag
        if self.params.spectrum == "magnitude":
            mag = np.sqrt(mag)
        bands = mag @ self._fb
        db = self._db_scale * np.log10(np.maximum(bands + self.params.log_offset, 1e-30)) - self._db_offset
        db = np.clip(db, self.params.db_floor, self.params.db_ceiling)
        return self._smoother.push(db) if self._smoother is not None else db


def compute(samples: npt.ArrayLike, params: FeatureParams) -> Floats:
    """Batch path: the whole signal to ``(n_frames, n_bands)`` float32 dB frames."""
    return FrontEnd(params).process_streaming(samples)


def as_float64(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Mono samples as float64 in [-1, 1]; int16 PCM is scaled by 1/32768."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float64) / 32768.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected float or int16 samples, got {arr.dtype}")
    return arr.astype(np.float64, copy=False)


class _Smoother:
    """Causal median or Gaussian filter over the last frames and nearby bands."""

    def __init__(self, params: FeatureParams) -> None:
        self._kind = params.smoothing
        self._half = params.smoothing_bands // 2
        self._floor = params.db_floor
        self._n_bands = params.n_bands
        self._frames = params.smoothing_frames
        sigma2 = 2.0 * params.smoothing_sigma**2
        lags = np.arange(params.smoothing_frames)[::-1]  # oldest first
        offsets = np.arange(-self._half, self._half + 1)
        kernel = np.exp(-(lags[:, None] ** 2) / sigma2) * np.exp(-(offsets[None, :] ** 2) / sigma2)
        self._kernel = kernel / kernel.sum()
        self.reset()

    def reset(self) -> None:
        self._history = np.full((self._frames, self._n_bands), self._floor)

    def push(self, db: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        self._history = np.roll(self._history, -1, axis=0)
        self._history[-1] = db
        padded = np.pad(self._history, ((0, 0), (self._half, self._half)), mode="edge")
        patches = np.lib.stride_tricks.sliding_window_view(padded, 2 * self._half + 1, axis=1)
        # patches: (frames, bands, k)
        if self._kind == "median":
            out = np.median(patches.transpose(1, 0, 2).reshape(self._n_bands, -1), axis=1)
        else:
            out = np.einsum("tbk,tk->b", patches, self._kernel)
        return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How a window of dB frames becomes the model's input tensor.

    The dB range ``[db_floor, db_ceiling]`` maps linearly onto [-1, 1] (the
    range ImageNet MobileNets expect); the ``(frames, bands)`` image becomes
    ``channels`` planes; int8 models then quantise with ``scale``/``zero_point``.
    """

    frames: int = setting(96, lo=1, hi=4096, unit="frames per window (height)")
    bands: int = setting(64, lo=1, hi=512, unit="bands (width)")
    channels: int = setting(3, lo=1, hi=3, unit="planes")
    channel_mode: Literal["replicate", "deltas"] = "replicate"
    """'replicate' copies the image into every plane; 'deltas' stacks it with its time differences."""
    dtype: Literal["float32", "int8"] = "float32"
    scale: float = setting(1.0, lo=1e-12, hi=1e6, unit="int8 step in normalised units")
    zero_point: int = setting(0, lo=-128, hi=127, unit="int8 code of 0.0")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The input tensor shape, batch of one."""
        return (1, self.frames, self.bands, self.channels)


def normalise(window_db: npt.ArrayLike, params: FeatureParams, spec: InputSpec) -> Floats:
    """dB window ``(frames, bands)`` -> float32 model input ``(1, frames, bands, channels)``."""
    db = np.asarray(window_db, dtype=np.float32)
    span = np.float32(2.0 / (params.db_ceiling - params.db_floor))
    x = (db - np.float32(params.db_floor)) * span - np.float32(1.0)
    if spec.channel_mode == "replicate" or spec.channels == 1:
        planes = [x] * spec.channels
    else:
        d1 = np.diff(x, axis=0, prepend=x[:1])
        d2 = np.diff(d1, axis=0, prepend=d1[:1])
        planes = [x, d1, d2][: spec.channels]
    return np.stack(planes, axis=-1)[None].astype(np.float32, copy=False)


def to_input(window_db: npt.ArrayLike, params: FeatureParams, spec: InputSpec) -> npt.NDArray[np.generic]:
    """The exact tensor the model takes: float32, or int8 quantised per ``spec``."""
    x = normalise(window_db, params, spec)
    if spec.dtype == "float32":
        return x
    q = np.rint(x / np.float32(spec.scale)) + spec.zero_point
    return np.asarray(np.clip(q, -128, 127), dtype=np.int8)


def window_ends(n_frames: int, window: int, hop: int) -> list[int]:
    """Frame counts after which an inference runs: every ``hop`` once a window is full.

    A signal shorter than one window still gets one inference at its end (the
    window is padded with ``db_floor`` frames at the start, i.e. silence).
    """
    ends = [t for t in range(window, n_frames + 1) if t % hop == 0]
    if not ends and n_frames > 0:
        ends = [n_frames]
    return ends


def window_at(frames: Floats, end: int, window: int, params: FeatureParams) -> Floats:
    """The ``window`` frames ending at frame count ``end``, floor-padded at the start."""
    start = end - window
    if start >= 0:
        return frames[start:end]
    pad = np.full((-start, frames.shape[1]), params.db_floor, dtype=np.float32)
    return np.concatenate((pad, frames[:end]))
