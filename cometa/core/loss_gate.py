"""Loss gates and label correction: which samples of a mini-batch a model trains on, and with which label.

- LGL (Tao et al., ICASSP 2022): a *fixed* gate, train on {i : ℓ_i ≤ gate} (``fixed_gate``).
- DLG (Han, Chen & Qian, Interspeech 2022): a *dynamic* gate. A 2-component GMM is fitted to the
  per-sample losses (``fit_loss_gmm``); with weights w_k, means μ_k, variances σ²_k and the clean
  component c = argmin_k μ_k, the gate g is the loss between the means at which the posterior of
  the clean component equals p (0.5: where the weighted densities cross):

      log(w_c N(g; μ_c, σ²_c)) − log(w_n N(g; μ_n, σ²_n)) = log(p / (1 − p))

  a quadratic in g (``gmm_gate``).
- LC: a sample above the gate takes the model's own prediction ŷ_i = argmax_k P(k | x_i) as its
  label when P(ŷ_i | x_i) > the correction threshold; otherwise it sits the step out
  (``correct_labels``).

Pure functions on numpy arrays or torch tensors (the result has the input's kind).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["fixed_gate", "fit_loss_gmm", "gmm_gate", "correct_labels"]


def fixed_gate(losses, gate: float):
    """LGL: (B,) bool mask of the samples whose loss is at most ``gate`` (Tao et al.'s ``ce <= gate``)."""
    if not gate > 0:  # also rejects NaN
        raise ValueError(f"gate must be positive, got {gate}")
    return losses <= gate


def fit_loss_gmm(losses, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A 2-component 1-D GMM of per-sample losses (EM, scikit-learn).

    Returns
    -------
    ``(weights, means, variances)``, each (2,) float64 and sorted by mean (component 0 = the
    low-loss, clean one), or None when the losses cannot support two components (fewer than 4
    finite values, or all equal).
    """
    from sklearn.mixture import GaussianMixture  # sklearn is slow to import: only when a gate is fitted

    x = np.asarray(losses, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 4 or np.ptp(x) <= 0:
        return None
    gmm = GaussianMixture(n_components=2, covariance_type="full", reg_covar=1e-6, random_state=seed,
                          n_init=1, max_iter=100).fit(x[:, None])
    order = np.argsort(gmm.means_.ravel())
    return (gmm.weights_[order].astype(np.float64), gmm.means_.ravel()[order].astype(np.float64),
            gmm.covariances_.ravel()[order].astype(np.float64))


def gmm_gate(weights, means, variances, *, posterior: float = 0.5) -> float:
    """DLG's gate: the loss g in [μ_0, μ_1] where P(component 0 | g) = ``posterior``.

    Parameters
    ----------
    weights, means, variances : (2,) GMM parameters, component 0 the lower mean (``fit_loss_gmm``).
    posterior : the clean component's posterior at the gate, in (0, 1).

    Returns
    -------
    g. When the posterior never reaches ``posterior`` between the means (an overlapping, lopsided
    mixture), the mean of the component it favours there: μ_1 if the clean component dominates all
    the way, μ_0 if the noisy one does.
    """
    if not 0.0 < posterior < 1.0:
        raise ValueError(f"posterior must be in (0, 1), got {posterior}")
    w, m, v = (np.asarray(a, dtype=np.float64).ravel() for a in (weights, means, variances))
    if not (w.shape == m.shape == v.shape == (2,)) or m[0] > m[1] or (v <= 0).any() or (w <= 0).any():
        raise ValueError(f"need 2 components sorted by mean with positive weights and variances, got "
                         f"weights {w}, means {m}, variances {v}")

    def log_odds(g):  # log(w0 N0(g)) - log(w1 N1(g)) - log(p / (1 - p))
        lw = np.log(w) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (g - m) ** 2 / v
        return lw[0] - lw[1] - math.log(posterior / (1 - posterior))

    # a g² + b g + c = 0 with the terms of log_odds collected
    a = 0.5 * (1 / v[1] - 1 / v[0])
    b = m[0] / v[0] - m[1] / v[1]
    c = log_odds(0.0)
    if abs(a) < 1e-12 * max(1 / v[0], 1 / v[1]):
        roots = np.array([-c / b]) if b != 0 else np.array([])
    else:
        disc = b * b - 4 * a * c
        roots = np.array([]) if disc < 0 else (-b + np.array([-1.0, 1.0]) * math.sqrt(disc)) / (2 * a)
    inside = roots[(roots >= m[0]) & (roots <= m[1])]
    if inside.size:
        return float(inside.min())
    return float(m[1] if log_odds((m[0] + m[1]) / 2) > 0 else m[0])


def correct_labels(probs, labels, gated_in, *, threshold: float):
    """LC: the labels each sample trains with, and which samples train.

    Parameters
    ----------
    probs : (B, K) predicted class probabilities (softmax of the head's logits).
    labels : (B,) pseudo labels.
    gated_in : (B,) bool, the samples under the loss gate (they keep their label).
    threshold : a sample above the gate takes argmax_k probs[i, k] as its label when that
        probability is above ``threshold``; otherwise it does not train.

    Returns
    -------
    targets : (B,) the label of each sample (the prediction where corrected).
    train : (B,) bool, gated in or corrected.
    corrected : (B,) bool, above the gate and confident (a correction may confirm the label).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if isinstance(probs, torch.Tensor):
        conf, pred = probs.max(dim=1)
        corrected = ~gated_in & (conf > threshold)
        return torch.where(corrected, pred, labels), gated_in | corrected, corrected
    p = np.asarray(probs)
    pred, conf = p.argmax(axis=1), p.max(axis=1)
    gated_in = np.asarray(gated_in, dtype=bool)
    corrected = ~gated_in & (conf > threshold)
    return np.where(corrected, pred, np.asarray(labels)), gated_in | corrected, corrected
