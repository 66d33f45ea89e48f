"""DLG-LC under DDP (2 gloo processes, the tiny linear models of tests/test_strategies.py): the GMM gate
is fitted to the losses of every rank, so both ranks gate at one threshold, the one a single
process would fit to all of the epoch's losses; and a run killed after an epoch and resumed from rank
0's state (what the training loop saves) ends where an uninterrupted run ends."""
import math

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cometa.config.sections import DLGLCConfig
from cometa.core.loss_gate import fit_loss_gmm, gmm_gate
from cometa.core.strategies import Batch, build_strategy
from tests.test_strategies import D_IN, K, _models

WORLD, PER_RANK, BATCHES, EPOCHS = 2, 8, 4, 3


def _global_batch(epoch: int, b: int) -> Batch:
    """Batch ``b`` of ``epoch``, all ranks' rows (each rank takes rows rank, rank + WORLD, ...)."""
    g = torch.Generator().manual_seed(1000 * epoch + b)
    n = WORLD * PER_RANK
    return Batch(audio=torch.randn(n, D_IN, generator=g, dtype=torch.float64),
                 frames=torch.rand(n, 3, 2, 2, generator=g, dtype=torch.float64),
                 labels=torch.randint(0, K, (n,), generator=g), noisy=torch.zeros(n, dtype=torch.bool),
                 index=torch.arange(n))


def _shard(batch: Batch, rank: int) -> Batch:
    return Batch(*(t[rank::WORLD] for t in (batch.audio, batch.frames, batch.labels, batch.noisy, batch.index)))


def _train(strategy, rank: int, epochs) -> dict:
    """Train ``epochs`` on this rank's shards; per epoch the losses the step saw (its forward under θ,
    before the update) and the gates fitted after it."""
    log: dict = {"losses": [], "gates": [], "dropped": 0}
    for e in epochs:
        seen = []
        for b in range(BATCHES):
            batch = _shard(_global_batch(e, b), rank)
            with torch.no_grad():
                seen.append(strategy.audio(batch.audio, batch.labels)[1].numpy())
            log["dropped"] += strategy.step(batch, keep_ratio=1.0).extra["n_dropped_audio"]
        strategy.end_epoch()
        log["losses"].append(np.concatenate(seen))
        log["gates"].append(dict(strategy.gates))
    return log


def _worker(rank: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    opts = DLGLCConfig(gmm_posterior=0.5, correct_labels=False)  # the gate alone decides who trains

    def fresh():
        audio, visual = _models()
        return build_strategy("dlg_lc", audio, visual, lr=1e-2, alpha=0.01, second_order=True, options=opts)

    whole = fresh()
    log = _train(whole, rank, range(1, EPOCHS + 1))
    # killed after epoch 1: every rank resumes from rank 0's state, the one the training loop saves
    killed = fresh()
    _train(killed, rank, [1])
    state = [{"audio": killed.audio.state_dict(), "visual": killed.visual.state_dict(),
              "strategy": killed.state_dict()}]
    dist.broadcast_object_list(state, src=0)
    resumed = fresh()
    resumed.audio.load_state_dict(state[0]["audio"])
    resumed.visual.load_state_dict(state[0]["visual"])
    resumed.load_state_dict(state[0]["strategy"])
    _train(resumed, rank, range(2, EPOCHS + 1))
    result = {**log, "whole": [p.detach().clone() for m in (whole.audio, whole.visual) for p in m.parameters()],
              "resumed": [p.detach().clone() for m in (resumed.audio, resumed.visual) for p in m.parameters()]}
    everyone = [None] * WORLD
    dist.all_gather_object(everyone, result)
    if rank == 0:
        torch.save(everyone, out)
    dist.destroy_process_group()


def test_dlg_lc_gates_agree_across_ranks_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    out = tmp_path / "result.pt"
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=WORLD, join=True)
    ranks = torch.load(out, weights_only=False)
    for e in range(EPOCHS):
        assert ranks[0]["gates"][e] == ranks[1]["gates"][e]  # one threshold per model on every rank
        # ... the one a single process fits to the epoch's losses of both ranks (in rank order)
        losses = np.concatenate([ranks[r]["losses"][e] for r in range(WORLD)])
        want = gmm_gate(*fit_loss_gmm(losses), posterior=0.5)
        assert math.isfinite(want) and ranks[0]["gates"][e]["audio"] == want
    assert ranks[0]["dropped"] > 0 and ranks[1]["dropped"] > 0  # the gates left samples out on both ranks
    for r in range(WORLD):
        for a, b in zip(ranks[r]["whole"], ranks[r]["resumed"]):
            assert torch.equal(a, b)
        for a, b in zip(ranks[0]["whole"], ranks[r]["whole"]):
            assert torch.equal(a, b)  # the ranks agree (their gradients are all-reduced)
    assert any(not torch.equal(a, b) for a, b in zip(_models()[0].parameters(), ranks[0]["whole"]))
