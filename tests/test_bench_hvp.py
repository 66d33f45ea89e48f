"""bench/bench_hvp.py: its exact Hessian-vector product is the one an independent method computes, its
finite difference is a correct one (it converges where the loss is smooth at the step's scale), and
the script runs end to end at the tiny size. No timing is asserted."""
from __future__ import annotations

import torch
from torch.func import grad, jvp

from bench import bench_hvp
from cometa.config import load_config
from cometa.core.batchnorm import _HandDoubleBackward


def _tiny_losses():
    return bench_hvp._losses(load_config("tiny"), torch.float64, seed=0)


def test_exact_hvp_is_forward_over_reverse():
    """The bench's reverse-over-reverse Hv (through cometa's closed-form BatchNorm double backward)
    equals torch.func's forward-over-reverse one (PyTorch's own derivatives) in float64."""
    for key, loss in _tiny_losses().items():
        calls = _HandDoubleBackward.calls
        hv = loss.exact_hvp()
        assert _HandDoubleBackward.calls > calls  # the closed-form double backward ran

        def f(params, loss=loss):  # the bench's own loss, outside the hand path: PyTorch's derivatives
            return loss([params[n] for n in loss.names])

        theta = dict(zip(loss.names, loss.theta))
        _, reference = jvp(grad(f), (theta,), (dict(zip(loss.names, loss.v)),))
        assert bench_hvp.relative_error(hv, [reference[n] for n in loss.names]) < 1e-9, key
        assert float(bench_hvp._norm(hv)) > 1.0


def test_finite_difference_converges_where_the_loss_is_smooth():
    """Where no ReLU changes sign between θ and θ + εv (r = 1e-7 in float64) the finite difference
    agrees with Hv to 1e-5; at r = 1e-2, DARTS' radius, it is off by more than |Hv| itself."""
    for key, loss in _tiny_losses().items():
        hv = loss.exact_hvp()
        assert bench_hvp.relative_error(loss.finite_difference_hvp(1e-7), hv) < 1e-5, key
        assert bench_hvp.relative_error(loss.finite_difference_hvp(1e-2), hv) > 1.0, key


def test_finite_difference_is_first_order_in_the_radius():
    """On a smooth loss (a quadratic plus a cubic term) the one-sided difference's error shrinks
    tenfold with the radius: the formula, not only its agreement at one radius, is right."""

    class Smooth(bench_hvp.SupportLoss):
        def __init__(self):
            self.theta = [torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)]
            self.v = [torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)]
            self.g = self.gradient(self.theta)

        def __call__(self, params):
            (p,) = params
            return (p * p).sum() + (p ** 3).sum() / 3

    loss = Smooth()
    (p,), (v,) = loss.theta, loss.v
    hv = [(2 + 2 * p) * v]  # H = diag(2 + 2p)
    torch.testing.assert_close(loss.exact_hvp()[0], hv[0])
    e1, e2 = (bench_hvp.relative_error(loss.finite_difference_hvp(r), hv) for r in (1e-3, 1e-4))
    assert 1e-6 < e1 < 1e-3 and 8 < e1 / e2 < 12


def test_main_runs_at_the_tiny_size():
    res = bench_hvp.main(quick=True, repeats=1)
    assert res["preset"] == "tiny" and set(res["cost"]) == {"audio", "visual"}
    for c in res["cost"].values():
        assert c["exact_units"] > 0 and c["finite_difference_units"] > 0
    for by in res["accuracy"].values():
        assert set(by) == {"float64", "float32"}
        assert set(by["float64"]["errors"]) == {f"{r:g}" for r in bench_hvp.RADII}
    assert "finite difference" in res["headline"]
