"""Benchmark: cometa's networks and its Co-Meta step against what a speaker-verification researcher
would use instead, as ratios cometa / peer measured in one process.

- ``ecapa_vs_speechbrain_*``: cometa's :class:`~cometa.models.encoders.EcapaTDNN` against SpeechBrain's
  ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`` at the demo's width (C=64, scale 4, SE 32,
  attention 32) and the paper's (C=512, scale 8, SE 128, attention 128), both 192-d, on the same
  log-mel batch (B, 80, T) (SpeechBrain's layout (B, T, 80) is made before timing). The two differ in
  one layer: cometa ends with BatchNorm1d(192) after the embedding (384 parameters more); SpeechBrain
  pads its convolutions by reflection, cometa by zeros.
- ``resnet34_vs_torchvision_*``: cometa's :class:`~cometa.models.encoders.FaceResNet` (depth 34, width
  64) against ``torchvision.models.resnet34`` with the same 192-d head (Linear(512, 192) + BatchNorm1d),
  at the paper's image size (224 px: cometa's network *is* torchvision's, plus the ImageNet input
  normalisation) and the demo's (32 px: cometa's small-image stem, a 3x3 stride-1 convolution without
  max-pool, keeps 16x the spatial positions of torchvision's 7x7/2 stem + max-pool, which is the
  architectural difference the ratio measures there). Each ResNet case also times a third network,
  interleaved with the two: torchvision's resnet34 given cometa's architecture at that size
  (:func:`torchvision_as_cometa`: cometa's input normalisation, and at small sizes its stem).
  ``x same-arch`` (cometa / that network) is then the implementation's share of the ratio, and
  ``arch cost`` (that network / torchvision's) the architecture's.
- A training step is forward, AAM-softmax (:class:`cometa.models.losses.AAMSoftmax`, K classes, the
  same head for both) and backward; an inference pass is the embeddings of the batch in eval mode
  under ``torch.inference_mode`` (reported as embeddings per second).
- ``meta_vs_torch_func``: one Co-Meta second-order step (Algorithm 1, ``bench_steps``' networks and
  random batch at the ``demo`` preset) by :class:`cometa.core.strategies.cometa_strategy.CoMeta`
  against a straightforward ``torch.func`` MAML step written here (:func:`torch_func_meta_gradients`):
  ``torch.func.grad`` of the query loss through ``torch.func.grad`` of the support loss, with
  ``torch.func.functional_call`` and the same Adam update. Both networks are copies of the same
  initial θ; the peer's copies have their BatchNorm running statistics removed
  (``torch.func.replace_all_batch_norm_modules_``, the documented way to differentiate BatchNorm
  under ``torch.func``): in training mode both normalise with the batch's statistics.

Timing: each pair is run alternately (order reversed on every other repeat) after one untimed warm-up
of each, threads as torch has them; the ratio is that of the medians over ``repeats`` (>= 7 unless
``quick``). Run: ``python -m bench.bench_peers [--quick] [--repeats N] [--batch B] [--threads N]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad

from bench.bench_steps import build_variant, random_batch
from bench.common import text_table
from cometa.config import load_config
from cometa.core.strategies.base import Batch, select_by_disagreement
from cometa.models.encoders import EcapaTDNN, FaceResNet, count_parameters
from cometa.models.encoders.resnet import SMALL_IMAGE
from cometa.models.losses import AAMSoftmax

N_MELS = 80
EMBED_DIM = 192
# width name -> EcapaTDNN options (SpeechBrain's are derived from them in `speechbrain_ecapa`)
ECAPA_WIDTHS = {  # the first entry of each case dict is the one the summary names
    "paper": {"channels": 512, "scale": 8, "se_bottleneck": 128, "attention_channels": 128},
    "demo": {"channels": 64, "scale": 4, "se_bottleneck": 32, "attention_channels": 32},
}
IMAGE_SIZES = {"paper": 224, "demo": 32}  # face crops, px
CROP_FRAMES = 181  # log-mel frames of the paper's 1.8 s crops (10 ms hop, centred)
N_CLASSES = 1000  # the AAM-softmax head's K for the encoder steps


def speechbrain_ecapa(channels: int, scale: int, se_bottleneck: int, attention_channels: int) -> nn.Module:
    """SpeechBrain's ECAPA_TDNN at the same widths as cometa's ``EcapaTDNN(**those options)``."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    return ECAPA_TDNN(N_MELS, lin_neurons=EMBED_DIM, channels=[channels] * 4 + [3 * channels],
                      res2net_scale=scale, se_channels=se_bottleneck, attention_channels=attention_channels)


class SpeechBrainEmbedder(nn.Module):
    """SpeechBrain's ECAPA (B, T, n_mels) -> (B, 1, D) as an embedder (B, T, n_mels) -> (B, D)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def torchvision_resnet34() -> nn.Module:
    """torchvision's resnet34 (no weights) with cometa's 192-d head: Linear(512, 192) + BatchNorm1d."""
    import torchvision

    net = torchvision.models.resnet34(weights=None)
    net.fc = nn.Sequential(nn.Linear(512, EMBED_DIM), nn.BatchNorm1d(EMBED_DIM))
    return net


def torchvision_as_cometa(image_size: int) -> nn.Module:
    """cometa's :class:`FaceResNet` at ``image_size`` (its own input normalisation) around torchvision's
    resnet34 (:func:`torchvision_resnet34`), whose stem below :data:`SMALL_IMAGE` px is cometa's 3x3
    stride-1 convolution without max-pool: torchvision's implementation in cometa's architecture. Timed
    beside both, it splits cometa's ratio into implementation and architecture."""
    model = FaceResNet(34, image_size=image_size, embed_dim=EMBED_DIM)
    net = torchvision_resnet34()
    if image_size < SMALL_IMAGE:
        net.conv1, net.maxpool = model.net.conv1, model.net.maxpool  # the small-image stem, as cometa builds it
    model.net = net
    return model


def _interleaved_times(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each callable (two or three) over ``repeats`` alternating runs (order reversed on every
    other repeat), after one warm-up each."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def _train_step(model: nn.Module, head: AAMSoftmax, x: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    params = list(model.parameters()) + list(head.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        head(model(x), labels).backward()  # forward, AAM-softmax (mean), backward
    return step


def _infer(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)
    return run


def compare_encoders(cometa_net: nn.Module, peer_net: nn.Module, x: torch.Tensor, x_peer: torch.Tensor, *,
                     repeats: int, seed: int = 0, control_net: nn.Module | None = None) -> dict:
    """Training step and inference of two embedders on the same batch: medians and ratios cometa / peer.

    ``control_net`` (the peer changed into cometa's architecture, on ``x_peer``) is timed interleaved with
    the two; each kind then also gets ``ratio_same_arch`` (cometa / control) and ``arch_cost``
    (control / peer).
    """
    b = x.shape[0]
    labels = torch.randint(0, N_CLASSES, (b,), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    head = AAMSoftmax(EMBED_DIM, N_CLASSES)
    nets = {"cometa": (cometa_net, x), "peer": (peer_net, x_peer)}
    if control_net is not None:
        nets["control"] = (control_net, x_peer)
    heads = {name: head if name == "cometa" else copy.deepcopy(head) for name in nets}
    out: dict = {"params_cometa": count_parameters(cometa_net), "params_peer": count_parameters(peer_net)}
    for net, _ in nets.values():
        net.train()
    train = _interleaved_times({name: _train_step(net, heads[name], inp, labels) for name, (net, inp) in nets.items()},
                         repeats)
    for net, _ in nets.values():
        net.eval()
    infer = _interleaved_times({name: _infer(net, inp) for name, (net, inp) in nets.items()}, repeats)
    for kind, times in (("train", train), ("infer", infer)):
        med = {name: statistics.median(t) for name, t in times.items()}
        c, p = med["cometa"], med["peer"]
        out[kind] = {"cometa_s": round(c, 5), "peer_s": round(p, 5), "ratio": round(c / p, 3),
                     "cometa_min_s": round(min(times["cometa"]), 5), "peer_min_s": round(min(times["peer"]), 5)}
        if control_net is not None:
            out[kind].update(control_s=round(med["control"], 5), ratio_same_arch=round(c / med["control"], 3),
                             arch_cost=round(med["control"] / p, 3))
    out["infer"]["cometa_emb_per_s"] = round(b / out["infer"]["cometa_s"], 1)
    out["infer"]["peer_emb_per_s"] = round(b / out["infer"]["peer_s"], 1)
    return out


# ---------------------------------------------------------------------------------------------
# the peer Co-Meta step: torch.func


def _loss_fn(model: nn.Module, buffers: dict, x: torch.Tensor, labels: torch.Tensor):
    """params -> (mean loss, (logits, per-sample losses)) of a SpeakerClassifier on prepared inputs."""
    def fn(params):
        logits, losses = functional_call(model, (params, buffers), (x, labels), {"prepared": True})
        return losses.mean(), (logits, losses)
    return fn


def torch_func_meta_gradients(audio: nn.Module, visual: nn.Module, batch: Batch, *, keep_ratio: float,
                              alpha: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """Algorithm 1's outer gradients of both models, written with ``torch.func`` only.

    ``batch`` has gone through the front ends (``Strategy.prepare``); the models' BatchNorm layers
    must keep no running statistics (``torch.func.replace_all_batch_norm_modules_``). For each model,
    θ' = θ − α ∇ℓ(D̄; θ) (``torch.func.grad`` of the support loss, whose forward also gives the
    predictions and losses under θ for Eq. 3 and the small-loss selection), then the query loss of the
    model under θ' on the samples its peer selected, differentiated with respect to θ through the inner
    step by an outer ``torch.func.grad``. Returns the gradients of the audio and the visual model
    (name -> tensor) and |D̄'|.
    """
    pa = {n: p.detach() for n, p in audio.named_parameters()}
    pv = {n: p.detach() for n, p in visual.named_parameters()}
    ba, bv = dict(audio.named_buffers()), dict(visual.named_buffers())
    support_a = _loss_fn(audio, ba, batch.audio, batch.labels)
    support_v = _loss_fn(visual, bv, batch.frames, batch.labels)
    n_disagree = []

    def outer(pa, pv):
        ga, (logits_a, loss_a) = grad(support_a, has_aux=True)(pa)
        gv, (logits_v, loss_v) = grad(support_v, has_aux=True)(pv)
        sel = select_by_disagreement(logits_a, logits_v, loss_a, loss_v, keep_ratio)
        n_disagree.append(int(sel.disagree.numel()))
        fast_a = {n: pa[n] - alpha * ga[n] for n in pa}
        fast_v = {n: pv[n] - alpha * gv[n] for n in pv}
        _, (_, q_a) = support_a(fast_a)  # per-sample losses under θ'
        _, (_, q_v) = support_v(fast_v)
        # each model's query set is its peer's selection; the sum separates (q_a needs θ_A only)
        return q_a[sel.visual].mean() + q_v[sel.audio].mean()

    grads_a, grads_v = grad(outer, argnums=(0, 1))(pa, pv)
    return grads_a, grads_v, n_disagree[0]


class TorchFuncCoMeta:
    """The peer step: front ends, :func:`torch_func_meta_gradients`, then Adam (lr β) on each model."""

    def __init__(self, audio: nn.Module, visual: nn.Module, *, lr: float, alpha: float):
        torch.func.replace_all_batch_norm_modules_(audio)
        torch.func.replace_all_batch_norm_modules_(visual)
        self.audio, self.visual, self.alpha = audio, visual, alpha
        self.opt_audio = torch.optim.Adam(audio.parameters(), lr=lr)
        self.opt_visual = torch.optim.Adam(visual.parameters(), lr=lr)

    def step(self, batch: Batch, *, keep_ratio: float) -> int:
        """One step; returns |D̄'|."""
        with torch.no_grad():
            batch = Batch(self.audio.prepare(batch.audio), self.visual.prepare(batch.frames), batch.labels,
                          batch.noisy, batch.index)
        ga, gv, n = torch_func_meta_gradients(self.audio, self.visual, batch, keep_ratio=keep_ratio,
                                              alpha=self.alpha)
        for model, opt, g in ((self.audio, self.opt_audio, ga), (self.visual, self.opt_visual, gv)):
            for name, p in model.named_parameters():
                p.grad = g[name]
            opt.step()
        return n


def compare_meta(preset: str, *, repeats: int, seed: int = 0) -> dict:
    """cometa's second-order Co-Meta step against :class:`TorchFuncCoMeta`, same θ, batch and Adam state."""
    cfg = load_config(preset)
    keep = 1.0 - cfg.stage2.tau
    batch = random_batch(cfg, seed=seed)
    ours = build_variant(cfg, "cometa", True, seed=seed)
    peer = TorchFuncCoMeta(copy.deepcopy(ours.audio), copy.deepcopy(ours.visual), lr=cfg.stage2.beta,
                           alpha=cfg.stage2.alpha)
    state = {"ours": copy.deepcopy((ours.audio.state_dict(), ours.visual.state_dict())),
             "peer": copy.deepcopy((peer.audio.state_dict(), peer.visual.state_dict()))}
    n_disagree = {}

    def run(name: str, st) -> Callable[[], None]:
        def fn() -> None:  # every step from the same θ (the restore is inside the timing of both alike)
            st.audio.load_state_dict(state[name][0])
            st.visual.load_state_dict(state[name][1])
            torch.manual_seed(seed)
            out = st.step(batch, keep_ratio=keep)
            n_disagree[name] = out if isinstance(out, int) else out.n_disagree
        return fn

    times = _interleaved_times({"cometa": run("ours", ours), "peer": run("peer", peer)}, repeats)
    c, p = statistics.median(times["cometa"]), statistics.median(times["peer"])
    return {"preset": preset, "batch_size": len(batch), "n_disagree": n_disagree, "cometa_s": round(c, 5),
            "peer_s": round(p, 5), "ratio": round(c / p, 3), "cometa_min_s": round(min(times["cometa"]), 5),
            "peer_min_s": round(min(times["peer"]), 5)}


def main(*, quick: bool = False, repeats: int | None = None, batch: int | None = None, threads: int | None = None,
         ecapa_widths: dict | None = None, image_sizes: dict | None = None, frames: int = CROP_FRAMES,
         meta_preset: str | None = None, seed: int = 0) -> dict:
    """All five comparisons; print a table and return the figures (``headline`` for the summary).

    ``quick``: 3 repeats, batch 4 and the ``tiny`` preset for the meta step. ``ecapa_widths``,
    ``image_sizes``, ``frames``: the encoder cases (defaults :data:`ECAPA_WIDTHS`,
    :data:`IMAGE_SIZES`, :data:`CROP_FRAMES`; the first entry of each is the headline's).
    """
    repeats = repeats or (3 if quick else 7)
    b = batch or (4 if quick else 16)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(seed)
        result: dict = {"repeats": repeats, "batch_size": b, "torch_threads": torch.get_num_threads(),
                        "ecapa": {}, "resnet34": {}}
        mel = torch.randn(b, N_MELS, frames, generator=g)  # (B, n_mels, T)
        mel_sb = mel.transpose(1, 2).contiguous()  # (B, T, n_mels): SpeechBrain's layout
        for width, opts in (ecapa_widths or ECAPA_WIDTHS).items():
            torch.manual_seed(seed)
            ours = EcapaTDNN(N_MELS, embed_dim=EMBED_DIM, **opts)
            peer = SpeechBrainEmbedder(speechbrain_ecapa(**opts))
            result["ecapa"][width] = {"channels": opts["channels"], "frames": frames,
                                      **compare_encoders(ours, peer, mel, mel_sb, repeats=repeats, seed=seed)}
            _progress(f"ecapa {width}", result["ecapa"][width])
        for name, size in (image_sizes or IMAGE_SIZES).items():
            img = torch.rand(b, 3, size, size, generator=g)  # (B, 3, S, S) in [0, 1]
            torch.manual_seed(seed)
            ours = FaceResNet(34, image_size=size, embed_dim=EMBED_DIM)
            result["resnet34"][name] = {"image_size": size,
                                        **compare_encoders(ours, torchvision_resnet34(), img, img, repeats=repeats,
                                                           seed=seed, control_net=torchvision_as_cometa(size))}
            _progress(f"resnet34 {name}", result["resnet34"][name])
        result["meta"] = compare_meta(meta_preset or ("tiny" if quick else "demo"), repeats=repeats, seed=seed)
    finally:
        torch.set_num_threads(before)
    _report(result)
    return result


def _progress(case: str, v: dict) -> None:
    """One line as each encoder case finishes (a long run on a busy machine shows where it is)."""
    parts = []
    for kind in ("train", "infer"):
        k = v[kind]
        split = (f", x{k['ratio_same_arch']:.2f} same-arch, arch cost x{k['arch_cost']:.2f}"
                 if "ratio_same_arch" in k else "")
        parts.append(f"{kind} x{k['ratio']:.2f} (peer {k['peer_s']:.3g} s{split})")
    print(f"  {case}: " + ", ".join(parts), flush=True)


def _report(result: dict) -> None:
    """Print the table, and put the five named ratios and the headline into ``result``."""
    rows = []
    for fam in ("ecapa", "resnet34"):
        for case, v in result[fam].items():
            size = f"C={v['channels']}, T={v['frames']}" if fam == "ecapa" else f"{v['image_size']} px"
            for kind in ("train", "infer"):
                k = v[kind]
                rows.append([f"{fam} {kind} ({case}: {size})", f"{v['params_cometa']:,}", f"{v['params_peer']:,}",
                             k["ratio"], k["peer_s"], k["cometa_s"], k.get("ratio_same_arch", "-"),
                             k.get("arch_cost", "-")])
    m = result["meta"]
    rows.append([f"co-meta 2nd-order step ({m['preset']}, B={m['batch_size']})", "-", "-", m["ratio"], m["peer_s"],
                 m["cometa_s"], "-", "-"])
    print(f"cometa against its peers: B={result['batch_size']}, medians of {result['repeats']} interleaved "
          f"repeats, {result['torch_threads']} torch threads")
    print(text_table(rows, ["case", "params cometa", "params peer", "x peer", "peer s", "cometa s", "x same-arch",
                            "arch cost"]))
    ecapa, res = result["ecapa"], result["resnet34"]
    first_e, first_r = next(iter(ecapa)), next(iter(res))
    named = {
        "ecapa_vs_speechbrain_train": ecapa[first_e]["train"]["ratio"],
        "ecapa_vs_speechbrain_infer": ecapa[first_e]["infer"]["ratio"],
        "resnet34_vs_torchvision_train": res[first_r]["train"]["ratio"],
        "resnet34_vs_torchvision_infer": res[first_r]["infer"]["ratio"],
        "meta_vs_torch_func": m["ratio"],
    }
    result["ratios"] = named
    others = {"ecapa_vs_speechbrain": (ecapa, first_e), "resnet34_vs_torchvision": (res, first_r)}
    parts = []
    for key, ratio in named.items():
        fam = key.rsplit("_", 1)[0]
        kind = key.rsplit("_", 1)[1]
        extra = ""
        if fam in others:
            table, first = others[fam]
            split = {c: (f" (same arch x{v[kind]['ratio_same_arch']:.2f})" if "ratio_same_arch" in v[kind] else "")
                     for c, v in table.items()}
            extra = "".join(f"; {c} x{v[kind]['ratio']:.2f}{split[c]}" for c, v in table.items() if c != first)
            peer_s = table[first][kind]["peer_s"]
            extra = f" ({first}, peer {peer_s:.3g} s{split[first]}{extra})"
        else:
            extra = f" (peer {m['peer_s']:.3g} s)"
        parts.append(f"{key} x{ratio:.2f}{extra}")
    result["headline"] = ", ".join(parts)
    print(result["headline"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, batch 4, tiny preset for the meta step")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved timed runs per case (default 7)")
    ap.add_argument("--batch", type=int, default=None, help="encoder batch size (default 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    a = ap.parse_args()
    main(quick=a.quick, repeats=a.repeats, batch=a.batch, threads=a.threads)
