"""Weighted, L2-penalised logistic regression in NumPy: what the device learns with, and training's evidence fit.

Two solvers, one answer: Newton's method for a few features (the AudioSet evidence: a label's score and its
classes' score), and Nesterov-accelerated gradient descent on standardised features for many (a personal head
on a 1024-value embedding), where a Newton step's (d+1)^2 Hessian would cost seconds on a Raspberry Pi; there
the penalty is on the standardised weights.  The bias is never penalised.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
NEWTON_MAX_FEATURES = 64
"""Up to this many features Newton's method; above, accelerated gradient descent."""


def sigmoid(z: npt.NDArray[np.floating]) -> F64:
    return np.asarray(1 / (1 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -40, 40))))


def fit(x: npt.ArrayLike, y: npt.ArrayLike, weight: npt.ArrayLike | None = None, l2: float = 1.0) -> F64:
    """``(w_1 .. w_d, bias)`` minimising ``sum(weight * logloss) + l2 / 2 * |w|^2``."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    ws = np.ones(len(ys)) if weight is None else np.asarray(weight, dtype=np.float64)
    if xs.ndim != 2 or len(xs) != len(ys) or len(ws) != len(ys):
        raise ValueError(f"expected x (n, d), y (n,) and weight (n,), got {xs.shape}, {ys.shape}, {ws.shape}")
    if xs.shape[1] <= NEWTON_MAX_FEATURES:
        return _newton(xs, ys, ws, l2)
    return _gradient(xs, ys, ws, l2)


def _newton(x: F64, y: F64, weight: F64, l2: float) -> F64:
    xb = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(xb.shape[1])
    penalty = np.diag([l2] * x.shape[1] + [0.0])
    for _ in range(100):
        p = sigmoid(xb @ beta)
        grad = xb.T @ (weight * (p - y)) + penalty @ beta
        hess = xb.T @ (xb * (weight * p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _gradient(x: F64, y: F64, weight: F64, l2: float, iterations: int = 300) -> F64:
    """Nesterov's accelerated gradient on features standardised by the data's own mean and spread, mapped back."""
    mean, spread = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / spread
    zb = np.hstack([z, np.ones((len(z), 1))])
    # a Lipschitz bound of the gradient: 1/4 of the largest eigenvalue of Z^T W Z, plus the penalty
    v = np.ones(zb.shape[1]) / np.sqrt(zb.shape[1])
    for _ in range(20):
        v = zb.T @ (weight * (zb @ v))
        v /= np.linalg.norm(v) + 1e-12
    lipschitz = 0.25 * float(v @ (zb.T @ (weight * (zb @ v)))) + l2 + 1e-9
    # the penalty is on the standardised weights: a feature's scale (a near-silent unit of an embedding has a
    # spread of 1e-4) does not decide how much it is held back, nor the step size
    penalty = np.append(np.full(x.shape[1], l2), 0.0)
    beta = np.zeros(zb.shape[1])
    ahead, t = beta.copy(), 1.0
    for _ in range(iterations):
        grad = zb.T @ (weight * (sigmoid(zb @ ahead) - y)) + penalty * ahead
        nxt = ahead - grad / lipschitz
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        ahead = nxt + (t - 1) / t_next * (nxt - beta)
        beta, t = nxt, t_next
    w = beta[:-1] / spread
    return np.append(w, beta[-1] - float(w @ mean))
