"""Streaming polyphase resampling in NumPy (scipy is not an edge dependency).

A microphone that only runs at 44.1 or 48 kHz must feed a 16 kHz model.  The
filter is a Kaiser-windowed sinc at the lower of the two Nyquist rates, split
into ``up`` phases; output sample ``m`` sits at input position ``m*down/up``
and is the dot product of the phase ``(m*down) % up`` with the input samples
ending at ``(m*down) // up``.  Integer positions make the result independent
of how the input is chunked.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]


class Resampler:
    """Resample a mono stream from ``in_rate_hz`` to ``out_rate_hz`` in any chunks."""

    def __init__(
        self, in_rate_hz: int, out_rate_hz: int, *, taps_per_phase: int = 24, kaiser_beta: float = 8.0
    ) -> None:
        g = math.gcd(in_rate_hz, out_rate_hz)
        self.up, self.down = out_rate_hz // g, in_rate_hz // g
        self._taps = taps_per_phase
        self._phases = self._design(taps_per_phase, kaiser_beta)
        self._history = np.zeros(taps_per_phase - 1, dtype=np.float64)
        self._n_in = 0
        self._n_out = 0

    def _design(self, taps: int, beta: float) -> npt.NDArray[np.float64]:
        length = taps * self.up
        cutoff = 0.5 / max(self.up, self.down)  # cycles per sample at the upsampled rate
        n = np.arange(length) - (length - 1) / 2.0
        h = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(length, beta)
        h *= self.up / h.sum()  # unity gain at DC for every phase on average
        # Row p holds h[p + k*up] for k = taps-1..0, i.e. reversed for a forward dot product.
        phases: npt.NDArray[np.float64] = h.reshape(taps, self.up).T[:, ::-1].copy()
        return phases

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples pass unchanged."""
        return self.up == self.down == 1

    def process(self, samples: npt.ArrayLike) -> Floats:
        """Consume mono ``samples`` and return every output sample they complete."""
        x = np.asarray(samples, dtype=np.float64)
        if self.passthrough:
            return x.astype(np.float32)
        buf = np.concatenate((self._history, x))
        base = self._n_in - (self._taps - 1)  # absolute input index of buf[0]
        self._n_in += len(x)
        m_end = -(-self._n_in * self.up // self.down)  # ceil: outputs whose input index < n_in
        m = np.arange(self._n_out, m_end, dtype=np.int64)
        self._n_out = m_end
        self._history = buf[len(buf) - (self._taps - 1) :]
        if len(m) == 0:
            return np.zeros(0, dtype=np.float32)
        pos = m * self.down
        ends = pos // self.up - base  # buf index of the newest input sample of each output
        windows = np.lib.stride_tricks.sliding_window_view(buf, self._taps)[ends - (self._taps - 1)]
        out: npt.NDArray[np.float64] = np.einsum("nk,nk->n", windows, self._phases[pos % self.up])
        return out.astype(np.float32)

    def reset(self) -> None:
        """Forget the stream's history."""
        self._history[:] = 0.0
        self._n_in = self._n_out = 0
