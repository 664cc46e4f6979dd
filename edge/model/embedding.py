"""The embedding output: the backbone's pooled features, what the device's own learning stands on.

A bundle may declare a third output (beside the label scores and the AudioSet head), the network's
embedding before its heads: YAMNet's 1024 averaged features.  Outputs are still told apart by size,
never by position, so the embedding's size must differ from the label count and from 521.  With it
the bundle may carry ``background.npz``: a compact set of embeddings of ordinary background audio
(int8 codes with the output's quantisation), pinned by ``embedding.background_sha256``, so a new device
can be taught a sound before it has listened to its own room (docs/bundle.md).

A bundle without the section runs exactly as before; what needs the embedding says so in one line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.model.audioset import AUDIOSET_CLASSES
from edge.model.outputs import Dequantiser, OutputSpec
from edge.schema import setting

F32 = npt.NDArray[np.float32]
BACKGROUND = "background.npz"
"""The bundle member holding the compact background set (``codes``: int8, one row per window)."""


@dataclass(frozen=True, kw_only=True)
class EmbeddingSpec:
    """Manifest section ``embedding``: the model's embedding output."""

    size: int = setting(1024, lo=2, hi=65536, unit="values")
    output: OutputSpec
    """Dtype and quantisation of the embedding tensor."""
    background_sha256: str | None = None
    """sha256 of ``background.npz``; None: the bundle carries no background set."""


class NoEmbedding(ValueError):
    """The model has no embedding output: the one line says why teaching cannot work with it."""


def problems(spec: EmbeddingSpec, labels: Sequence[str], has_audioset: bool) -> list[str]:
    """What is wrong with the section for a model with these labels: one line each, naming the field."""
    found = []
    if spec.size == len(labels):
        found.append(f"embedding.size: {spec.size}, as many as the labels: two outputs of one size")
    if has_audioset and spec.size == AUDIOSET_CLASSES:
        found.append(f"embedding.size: {spec.size}, as many as the AudioSet scores: two outputs of one size")
    return found


def background_embeddings(data: bytes, spec: EmbeddingSpec, name: str) -> F32:
    """The compact background set of a bundle as float32 rows (ValueError naming ``name`` if malformed)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            codes = np.asarray(npz["codes"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{name}: {BACKGROUND}: unreadable ({exc})") from None
    if codes.ndim != 2 or codes.shape[1] != spec.size or codes.dtype.name != spec.output.dtype or not len(codes):
        raise ValueError(
            f"{name}: {BACKGROUND}: expected rows of {spec.size} {spec.output.dtype} values, "
            f"got {codes.dtype.name} {list(codes.shape)}"
        )
    rows: F32 = Dequantiser(spec.output)(codes)
    return rows


def background_npz(rows: npt.NDArray[np.integer | np.floating]) -> bytes:
    """``background.npz`` bytes for rows of embedding codes (as the model outputs them)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, codes=rows)
    return buf.getvalue()
