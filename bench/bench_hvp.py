"""Benchmark: Co-Meta's second-order term, the exact Hessian-vector product against a finite difference.

A second-order Co-Meta step takes the outer gradient (I − αH)v, v = ∇ℓ(θ') and H the Hessian of the
support loss at θ. cometa computes Hv exactly, by differentiating the inner gradient's graph (reverse
over reverse): in units of one forward, the double backward (4) and the walk back through the support
forward (2) on top of the support's and the query's forward and backward (3 + 3), 12 where a baseline
step costs 3. The cheaper approximation DARTS (Liu et al., ICLR 2019) makes of the same term,

    Hv ≈ (∇ℓ(θ + εv) − ∇ℓ(θ)) / ε,   ε = r / ‖v‖,

replaces those 6 units by one more forward and backward (3): 9, ×3.0. This script measures both sides
of that trade on the preset's encoders and batch (``bench_steps``' random batch and seed):

- cost: each way of obtaining Hv, its support forward and backward included, in units of one plain
  forward + backward of the same model (interleaved, medians);
- accuracy: ‖FD − Hv‖ / ‖Hv‖ at radii r = ε‖v‖ from 1e-1 to 1e-7, in float64 and float32.

v is the first-order MAML direction ∇ℓ(θ') at θ' = θ − α∇ℓ(θ), ℓ the AAM-softmax loss of the whole
batch (the query set is D̄' ≈ D̄ on a random batch, where the fresh models disagree almost everywhere).
The losses are cometa's own (``call_with`` of the classifiers), in training mode.

What it shows on the demo's encoders (Intel Xeon, 2 threads): the exact Hv costs x3.3 (audio) and
x3.4 (visual) a forward + backward, the finite difference x2.0, so the approximation would save what
×3.0 needs. But the gradient of these ReLU networks jumps wherever a pre-activation crosses zero,
and the step εv crosses such kinks at every radius float32 can resolve: the finite difference is
1.7x |Hv| off at r = 0.1 and further off at smaller r (4x at DARTS' 0.01). Float64 agrees (to 1e-6)
only at r = 1e-7, where no pre-activation changes sign; in float32 such a step is below the
parameters' ulp (~4e-9 for a weight of 0.05). This is not a property of the random weights: a
layer of the demo's audio encoder has B·C·T = 64·64·180 ≈ 0.74 M pre-activations (about 10 M over
the network), BatchNorm keeps them at unit scale, so that (density ~0.4 at zero) a handful lie within
1e-6 of zero in any such network, trained or not. The exact term stays.
Run: ``python -m bench.bench_hvp [--preset tiny] [--repeats N]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from bench.bench_steps import build_variant, random_batch
from bench.common import text_table
from cometa.config import load_config
from cometa.core.batchnorm import hand_double_backward_batchnorm
from cometa.core.meta import call_with

RADII = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
DTYPES = ("float64", "float32")


def _norm(tensors) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


class SupportLoss:
    """ℓ(D̄; params) of one classifier on a prepared batch, and the vectors the comparison needs."""

    def __init__(self, model, x, labels, *, alpha: float):
        self.model, self.x, self.labels = model, x, labels
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.theta = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
        self.g = self.gradient(self.theta)  # ∇ℓ(θ)
        self.v = self.gradient([p - alpha * t for p, t in zip(self.theta, self.g)])  # ∇ℓ(θ'), θ' = θ − α∇ℓ(θ)

    def __call__(self, params) -> torch.Tensor:
        return call_with(self.model, dict(zip(self.names, params)), self.x, self.labels, prepared=True)[1].mean()

    def gradient(self, params) -> list[torch.Tensor]:
        """∇ℓ at ``params``."""
        leaves = [p.detach().requires_grad_() for p in params]
        return [t.detach() for t in torch.autograd.grad(self(leaves), leaves)]

    def exact_hvp(self) -> list[torch.Tensor]:
        """Hv by reverse over reverse, as CoMeta's second-order outer gradient obtains it (BatchNorm's
        double backward in closed form, :mod:`cometa.core.batchnorm`)."""
        leaves = [p.detach().requires_grad_() for p in self.theta]
        with hand_double_backward_batchnorm(True):
            g = torch.autograd.grad(self(leaves), leaves, create_graph=True)
        return [t.detach() for t in torch.autograd.grad(g, leaves, self.v)]

    def finite_difference_hvp(self, radius: float, *, reuse_gradient: bool = True) -> list[torch.Tensor]:
        """(∇ℓ(θ + εv) − ∇ℓ(θ)) / ε with ε = radius / ‖v‖; ∇ℓ(θ) is the one computed at construction
        unless ``reuse_gradient`` is False (the cost measurement: both support gradients, as in a step)."""
        g = self.g if reuse_gradient else self.gradient(self.theta)
        eps = radius / float(_norm(self.v))
        shifted = self.gradient([p + eps * t for p, t in zip(self.theta, self.v)])
        return [(s - t) / eps for s, t in zip(shifted, g)]


def relative_error(approx, exact) -> float:
    return float(_norm([a - e for a, e in zip(approx, exact)]) / _norm(exact))


def _losses(cfg, dtype: torch.dtype, *, seed: int) -> dict[str, SupportLoss]:
    st = build_variant(cfg, "baseline", True, seed=seed)  # the same θ as bench_steps' variants
    st.audio.to(dtype), st.visual.to(dtype)
    b = random_batch(cfg, seed=seed)
    b = st.prepare(type(b)(b.audio.to(dtype), b.frames.to(dtype), b.labels, b.noisy, b.index))
    return {"audio": SupportLoss(st.audio, b.audio, b.labels, alpha=cfg.stage2.alpha),
            "visual": SupportLoss(st.visual, b.frames, b.labels, alpha=cfg.stage2.alpha)}


def accuracy(cfg, *, seed: int = 0, radii=RADII) -> dict:
    """model -> dtype -> {"hv_norm", "errors": {radius: ‖FD − Hv‖ / ‖Hv‖}}."""
    out: dict = {"audio": {}, "visual": {}}
    for dtype in DTYPES:
        for key, loss in _losses(cfg, getattr(torch, dtype), seed=seed).items():
            hv = loss.exact_hvp()
            out[key][dtype] = {"hv_norm": float(_norm(hv)),
                               "errors": {r: relative_error(loss.finite_difference_hvp(r), hv) for r in radii}}
    return out


def cost(cfg, *, repeats: int, seed: int = 0) -> dict:
    """model -> median seconds of a plain forward + backward, of the exact Hv and of the finite
    difference, each with its support forward and backward (interleaved), and the latter two in
    units of the first."""
    out = {}
    for key, loss in _losses(cfg, torch.float32, seed=seed).items():
        ways: dict[str, Callable[[], list[torch.Tensor]]] = {
            "fwd_bwd": partial(loss.gradient, loss.theta),
            "exact": loss.exact_hvp,
            "finite_difference": partial(loss.finite_difference_hvp, 1e-2, reuse_gradient=False)}
        for fn in ways.values():  # untimed: oneDNN builds its primitives on the first calls
            fn()
        times: dict[str, list[float]] = {w: [] for w in ways}
        order = list(ways)
        for r in range(repeats):
            for w in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                ways[w]()
                times[w].append(time.perf_counter() - t0)
        med = {w: statistics.median(t) for w, t in times.items()}
        out[key] = {**{f"{w}_s": round(s, 4) for w, s in med.items()},
                    "exact_units": round(med["exact"] / med["fwd_bwd"], 2),
                    "finite_difference_units": round(med["finite_difference"] / med["fwd_bwd"], 2)}
    return out


def main(preset: str = "demo", *, quick: bool = False, repeats: int | None = None, seed: int = 0) -> dict:
    """Cost and accuracy of the two Hessian-vector products (module docstring); prints two tables."""
    if quick:
        preset = "tiny"
    cfg = load_config(preset)
    acc = accuracy(cfg, seed=seed)
    costs = cost(cfg, repeats=repeats or (3 if quick else 7), seed=seed)
    print(f"Hv of the support loss, preset {preset}, B={cfg.stage2.batch_size}, v = ∇ℓ(θ − α∇ℓ(θ)), "
          f"{torch.get_num_threads()} torch threads")
    print(text_table([[m, c["fwd_bwd_s"], c["exact_units"], c["finite_difference_units"]] for m, c in costs.items()],
                     ["model", "forward + backward s", "exact Hv (x fwd+bwd)", "finite difference (x fwd+bwd)"]))
    print("‖finite difference − Hv‖ / ‖Hv‖ at radius r = ε‖v‖")
    print(text_table([[m, dt, f"{a['hv_norm']:.3g}", *(f"{a['errors'][r]:.2g}" for r in RADII)]
                      for m, by in acc.items() for dt, a in by.items()],
                     ["model", "dtype", "‖Hv‖", *(f"r={r:g}" for r in RADII)]))
    worst32 = {m: min(by["float32"]["errors"].values()) for m, by in acc.items()}
    headline = ("exact Hv " + ", ".join(f"{m} x{c['exact_units']:.2f}" for m, c in costs.items())
                + " a forward+backward, finite difference "
                + ", ".join(f"{m} x{c['finite_difference_units']:.2f}" for m, c in costs.items())
                + "; its best float32 error " + ", ".join(f"{m} {e:.2g}" for m, e in worst32.items())
                + f" of |Hv| (preset {preset})")
    return {"preset": preset, "batch_size": cfg.stage2.batch_size, "torch_threads": torch.get_num_threads(),
            "radii": list(RADII), "cost": costs,
            "accuracy": {m: {dt: {"hv_norm": a["hv_norm"], "errors": {f"{r:g}": e for r, e in a["errors"].items()}}
                             for dt, a in by.items()} for m, by in acc.items()},
            "best_float32_error": worst32, "headline": headline}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "paper"])
    ap.add_argument("--repeats", type=int, default=None, help="interleaved timed repeats")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 3 repeats")
    a = ap.parse_args()
    main(a.preset, quick=a.quick, repeats=a.repeats)
