"""Post-hoc calibration of predicted probabilities (DE, direction), fitted on out-of-fold predictions only."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import optimize, special


class ProbabilityCalibrator:
    """Map predicted probabilities to calibrated ones: isotonic regression or temperature scaling.

    Fit it on *out-of-fold* predictions (``cross_validate`` writes them under ``f"cv_{model}"``) and their labels,
    never on the perturbations it will be applied to.

    Parameters
    ----------
    method
        ``"isotonic"`` (monotone step function, :class:`sklearn.isotonic.IsotonicRegression`) or ``"temperature"``
        (``sigmoid(logit(p) / T)``, one parameter fitted by maximum likelihood).
    """

    def __init__(self, method: Literal["isotonic", "temperature"] = "isotonic") -> None:
        if method not in ("isotonic", "temperature"):
            msg = f"`method={method!r}`: use 'isotonic' or 'temperature'."
            raise ValueError(msg)
        self.method = method
        self.temperature_: float | None = None
        self.isotonic_ = None

    @staticmethod
    def _clean(proba, y=None):
        p = np.asarray(proba, dtype=np.float64).ravel()
        keep = np.isfinite(p) if y is None else np.isfinite(p) & np.isfinite(np.asarray(y, dtype=np.float64).ravel())
        return p, keep

    def fit(self, proba: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        """Fit on predicted probabilities and 0/1 labels (any shape; NaN entries ignored)."""
        p, keep = self._clean(proba, y)
        yy = np.asarray(y, dtype=np.float64).ravel()[keep]
        p = p[keep]
        if yy.size == 0 or yy.min() == yy.max():
            msg = f"Calibration needs both classes among the labels; got {int(yy.sum())} positives of {yy.size}."
            raise ValueError(msg)
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.isotonic_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, yy)
        else:
            logit = special.logit(np.clip(p, 1e-7, 1 - 1e-7))

            def nll(log_t: float) -> float:
                q = np.clip(special.expit(logit / np.exp(log_t)), 1e-12, 1 - 1e-12)
                return -float(np.mean(yy * np.log(q) + (1 - yy) * np.log(1 - q)))

            self.temperature_ = float(np.exp(optimize.minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, same shape as ``proba`` (NaN stays NaN)."""
        if self.isotonic_ is None and self.temperature_ is None:
            msg = "This ProbabilityCalibrator is not fitted yet. Call `.fit(proba, y)` first."
            raise RuntimeError(msg)
        shape = np.shape(proba)
        p, keep = self._clean(proba)
        out = np.full(p.shape, np.nan)
        if self.method == "isotonic":
            out[keep] = self.isotonic_.predict(p[keep])
        else:
            out[keep] = special.expit(special.logit(np.clip(p[keep], 1e-7, 1 - 1e-7)) / self.temperature_)
        return out.reshape(shape)
