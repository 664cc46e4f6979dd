"""Which weights a training phase keeps, as one Keras callback for both recipes (training/fit/fit.py and
training/fit/audioset_fit.py).

By default the epoch with the best clip-level validation accuracy, the quantity the device reports, with early
stopping after ``patience`` epochs without a gain (``from_start``: the weights before the first epoch are a
candidate too).  With ``average`` > 0 every epoch runs and the mean of the last ``average`` epochs' weights is
kept instead (stochastic weight averaging).  Without validation clips nothing is scored: the last weights (or
the mean) stay.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

_LOGGER = logging.getLogger(__name__)

Accuracy = Callable[[Any], float]
"""The clip accuracy of a Keras model on the validation clips."""


def keeper(accuracy: Accuracy | None, patience: int, *, average: int = 0, from_start: bool = False) -> Any:
    """The callback; ``accuracy`` None where there are no validation clips."""
    import keras

    class KeptWeights(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_weights, self.wait = -1.0, None, 0
            self.recent: deque[list[Any]] = deque(maxlen=max(1, average))

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            if from_start and accuracy is not None and not average and self.best < 0:
                self.best, self.best_weights = accuracy(self.model), self.model.get_weights()
                _LOGGER.info("validation clip accuracy before training: %.3f", self.best)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if average:
                self.recent.append(self.model.get_weights())
            if accuracy is None:
                return
            acc = accuracy(self.model)
            _LOGGER.info("epoch %d: validation clip accuracy %.3f", epoch + 1, acc)
            if logs is not None:
                logs["val_clip_acc"] = acc
            if average:
                return
            if acc > self.best:
                self.best, self.best_weights, self.wait = acc, self.model.get_weights(), 0
            else:
                self.wait += 1
                self.model.stop_training = self.wait >= patience

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.recent:
                self.model.set_weights(mean_weights(list(self.recent)))
                acc = accuracy(self.model) if accuracy is not None else float("nan")
                _LOGGER.info("kept the mean of the last %d epochs' weights: validation clip accuracy %.3f",
                             len(self.recent), acc)  # fmt: skip
            elif self.best_weights is not None:
                self.model.set_weights(self.best_weights)
                _LOGGER.info("kept the weights with validation clip accuracy %.3f", self.best)

    return KeptWeights()


def mean_weights(epochs: list[list[Any]]) -> list[Any]:
    """Element-wise mean of several weight lists (a non-float variable keeps its last value)."""
    out = []
    for values in zip(*epochs, strict=True):
        last = np.asarray(values[-1])
        floating = np.issubdtype(last.dtype, np.floating)
        out.append(np.mean(np.stack(values), axis=0).astype(last.dtype) if floating else last)
    return out
