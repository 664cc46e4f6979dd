"""YAMNet int8 as a peer and teacher (training side only: the device never runs it).

The model (``../shared/peers/yamnet_spectra_in.tflite``) takes one 96x64 log-mel
patch and returns 521 AudioSet scores; its pooled 1024-d embedding is the
intermediate tensor ``...layer28/reduce_mean``, readable because the interpreter
is opened with ``experimental_preserve_all_tensors``.

YAMNet's front end (16 kHz, 25 ms periodic Hann, 10 ms hop, 512-point FFT
magnitude, 64 HTK-mel bands 125-7500 Hz with peak-1 triangles,
``log(mel + 0.001)``) is computed by :mod:`edge.features`, the project's only
spectrogram code: its HTK-mel magnitude dB bands are turned back into linear
magnitudes and the area normalisation of each band is undone.  One difference
remains: :mod:`edge.scales` draws the triangles linear in Hz, TensorFlow's
``linear_to_mel_weight_matrix`` linear in mel.  Measured on 200 ESC-50 fold-4
patches: log-mel values differ by at most 0.013 (median ~1e-3), YAMNet's top-1
class agrees on 95.5% of patches, scores differ by 1e-4 on average and at most
0.14.  With the same triangles the two agree to 3e-7 (tests/training/test_yamnet.py).
:data:`YAMNET_FEATURES` removes that difference (peak-1 triangles linear in mel,
``log_offset``: YAMNet's values are its dB times :data:`DB_TO_LN`); :func:`patches`
and the teacher cache keep :data:`FEATURES` until their tests and caches move.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import scales
from edge.features import FeatureParams, as_float64, compute
from edge.model.runtime import interpreter_class

_LOGGER = logging.getLogger(__name__)

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
PATCH_FRAMES = 96
BANDS = 64
EMBEDDING_TENSOR = "layer28/reduce_mean"
FRIGATE_HOP_SAMPLES = 15600
"""0.975 s at 16 kHz: Frigate's one call per chunk, and the samples that make exactly 96 frames."""
LOG_OFFSET = 0.001
FEATURES = FeatureParams(scale="mel_htk", spectrum="magnitude", db_floor=-200.0, db_ceiling=100.0)
"""edge.features' area-normalised HTK-mel magnitude dB, which :func:`log_mel` turns into YAMNet's values."""
YAMNET_FEATURES = FeatureParams(
    scale="mel_htk",
    spectrum="magnitude",
    filter_norm="peak",
    triangles="warped",
    log_offset=LOG_OFFSET,
    db_floor=-200.0,
    db_ceiling=100.0,
)
"""YAMNet's front end exactly, as dB: ``ln(mel + 0.001) == dB * DB_TO_LN`` (peak-1 triangles linear in mel, as
TensorFlow's; the floor is 20*log10(0.001) = -60 dB, never clipped).  Equals YAMNet's tf.signal features
to 5e-5 (tests/training/test_audioset_port.py).  :func:`patches` still uses :data:`FEATURES` (triangles
linear in Hz), which its tests pin."""
DB_TO_LN = math.log(10.0) / 20.0
"""Magnitude dB (``db_ref`` 1) to natural log."""

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class YamnetParams:
    """Where the peer model lives and how to run it."""

    model_path: Path = PEERS / "yamnet_spectra_in.tflite"
    class_map_path: Path = PEERS / "yamnet_class_map.csv"
    threads: int = 1
    """Interpreter threads."""


def peak_gains(params: FeatureParams = FEATURES) -> npt.NDArray[np.float64]:
    """Each band's peak weight in edge.scales' area-normalised filterbank (divide by it for peak-1 bands)."""
    edges = scales.band_edges_hz(params.scale, params.f_min_hz, params.f_max_hz, params.n_bands)
    return np.diag(scales.triangular(edges[1:-1], edges)).copy()


def log_mel(frames_db: npt.ArrayLike, params: FeatureParams = FEATURES) -> Floats:
    """edge.features magnitude-dB HTK-mel frames -> YAMNet's ``log(mel + 0.001)`` with peak-1 bands.

    Frames made with YAMNet's own parameters (peak-1, ``log_offset`` 0.001: :data:`YAMNET_FEATURES`) only
    need the scale factor; area-normalised ones without an offset (:data:`FEATURES`) are undone and re-logged.
    """
    if params.spectrum != "magnitude":
        raise ValueError("log_mel: expected magnitude dB frames (YAMNet's spectrum)")
    db = np.asarray(frames_db, dtype=np.float64) + 20.0 * np.log10(params.db_ref)
    if params.filter_norm == "peak" and params.log_offset == LOG_OFFSET:
        return np.asarray(db * DB_TO_LN, dtype=np.float32)
    if params.filter_norm != "area" or params.log_offset != 0.0:
        raise ValueError("log_mel: expected FEATURES-like (area, no offset) or YAMNET_FEATURES-like frames")
    return np.asarray(np.log(10.0 ** (db / 20.0) / peak_gains(params) + LOG_OFFSET), dtype=np.float32)


def patches(samples: npt.ArrayLike, hop_samples: int = FRIGATE_HOP_SAMPLES) -> Floats:
    """``(n, 96, 64)`` YAMNet patches, one per ``hop_samples``; each covers 15600 samples (0.975 s).

    Audio shorter than one patch gives none.
    """
    x = as_float64(samples)
    starts = range(0, len(x) - FRIGATE_HOP_SAMPLES + 1, hop_samples)
    if hop_samples % FEATURES.hop_samples == 0:  # frames line up: one pass, sliced
        frames = log_mel(compute(x, FEATURES))
        step = hop_samples // FEATURES.hop_samples
        out = [frames[i * step : i * step + PATCH_FRAMES] for i in range(len(starts))]
    else:
        out = [log_mel(compute(x[s : s + FRIGATE_HOP_SAMPLES], FEATURES)) for s in starts]
    if not out:
        return np.zeros((0, PATCH_FRAMES, BANDS), dtype=np.float32)
    return np.stack(out).astype(np.float32, copy=False)


def read_class_names(path: Path) -> list[str]:
    """Display names in output order from YAMNet's class map CSV (index,mid,display_name)."""
    with path.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda row: int(row["index"]))
    return [row["display_name"] for row in rows]


def read_mapping(path: Path, class_names: Sequence[str]) -> dict[str, list[int]]:
    """Label -> YAMNet class indices from a CSV ``label,audioset_classes`` (``;``-separated display names,
    configs/esc50_audioset.csv; the older header ``esc50_label`` is read too); labels with none are left out; a
    class that is not YAMNet's (with the nearest name) or mapped to two labels is refused in one line."""
    index = {name: i for i, name in enumerate(class_names)}
    mapping: dict[str, list[int]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in ("label", "esc50_label") if c in (reader.fieldnames or ())), None)
        if column is None or "audioset_classes" not in (reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns label,audioset_classes, got {reader.fieldnames}")
        for row in reader:
            label = row[column]
            names = [n.strip() for n in (row["audioset_classes"] or "").split(";") if n.strip()]
            for name in names:
                if name not in index:
                    close = difflib.get_close_matches(name, list(index), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ValueError(f"{path}: {label}: {name!r} is not a YAMNet class{hint}")
            if names:
                mapping[label] = [index[n] for n in names]
    used = [i for indices in mapping.values() for i in indices]
    if len(used) != len(set(used)):
        raise ValueError(f"{path}: an AudioSet class is mapped to two labels")
    return mapping


class Yamnet:
    """One YAMNet int8 interpreter: a log-mel patch in, AudioSet scores and the embedding out."""

    def __init__(self, params: YamnetParams | None = None) -> None:
        self.params = params or YamnetParams()
        self._interp, self.preserves_tensors = _open(self.params)
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._embedding = _tensor_named(self._interp, EMBEDDING_TENSOR)
        self.class_names = read_class_names(self.params.class_map_path)

    def infer(self, patch: npt.ArrayLike) -> tuple[Floats, Floats]:
        """One ``(96, 64)`` patch -> (521 scores in [0, 1], 1024-d dequantised embedding).

        The embedding is all NaN on a runtime that cannot preserve intermediate tensors.
        """
        self._interp.set_tensor(self._input["index"], self._quantise(patch))
        self._interp.invoke()
        scores = _dequantise(self._interp.get_tensor(self._output["index"]), self._output)
        return scores.reshape(-1), self._read_embedding()

    def _read_embedding(self) -> Floats:
        if not self.preserves_tensors:
            return np.full(int(np.prod(self._embedding["shape"])), np.nan, dtype=np.float32)
        return _dequantise(self._interp.get_tensor(self._embedding["index"]), self._embedding).reshape(-1)

    def _quantise(self, patch: npt.ArrayLike) -> npt.NDArray[np.generic]:
        x = np.asarray(patch, dtype=np.float32).reshape(self._input["shape"])
        scale, zero_point = self._input["quantization"]
        if self._input["dtype"] == np.float32 or scale == 0:
            return x
        info = np.iinfo(self._input["dtype"])
        q = np.clip(np.rint(x / np.float32(scale)) + zero_point, info.min, info.max)
        return np.asarray(q, dtype=self._input["dtype"])


def _open(params: YamnetParams) -> tuple[Any, bool]:
    """The interpreter with all tensors preserved, or without when the runtime lacks the option."""
    cls, package = interpreter_class()
    kwargs: dict[str, Any] = {"model_path": str(params.model_path), "num_threads": params.threads}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*", category=UserWarning)
        try:
            interp, preserved = cls(**kwargs, experimental_preserve_all_tensors=True), True
        except TypeError:
            _LOGGER.warning("%s cannot preserve intermediate tensors: YAMNet embeddings will be NaN", package)
            interp, preserved = cls(**kwargs), False
    interp.allocate_tensors()
    return interp, preserved


def _tensor_named(interp: Any, suffix: str) -> dict[str, Any]:
    """The one tensor whose name ends in ``suffix``."""
    found = [d for d in interp.get_tensor_details() if d["name"].endswith(suffix)]
    if len(found) != 1:
        raise ValueError(f"expected one tensor named '...{suffix}' in YAMNet, found {len(found)}")
    return dict(found[0])


def _dequantise(values: npt.NDArray[np.generic], detail: dict[str, Any]) -> Floats:
    scale, zero_point = detail["quantization"]
    if values.dtype == np.float32 or scale == 0:
        return np.asarray(values, dtype=np.float32)
    return ((values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
