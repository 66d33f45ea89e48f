"""Two CPU processes (torchrun, gloo) for Stage I and every strategy: training proceeds and the
ranks' parameters stay identical (the meta step's explicit gradients are all-reduced)."""
import pytest

from cometa.config import load_config
from cometa.pipeline import steps
from cometa.runs import RunStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    cfg = load_config("tiny", overrides=["nproc_per_node=2", "stage1.epochs=1", "stage2.epochs_per_round=1"])
    RunStore(run, create=True).write_config(cfg.to_dict())
    steps.corpus_step(run, progress=False)
    steps.stage1_step(run, progress=False)  # launches torchrun with 2 processes
    return run


def test_stage1_under_ddp(ddp_run):
    store = RunStore(ddp_run)
    div = store.scalars(stage="stage1", name="ddp_param_divergence")
    assert len(div) == 1 and div["value"].iloc[0] == 0.0
    assert len(store.scalars(stage="eval/O", round=0)) > 0  # rank 0 evaluated the gathered embeddings
    assert (ddp_run / "stage1" / "model.pt").exists()


@pytest.mark.parametrize("strategy", ["baseline", "coteaching_plus", "cometa"])
def test_round_under_ddp(ddp_run, strategy):
    out = steps.round_step(ddp_run, strategy, 1, progress=False)
    store = RunStore(ddp_run)
    div = store.scalars(strategy=strategy, stage="train", name="ddp_param_divergence")
    assert len(div) == 1 and div["value"].iloc[0] == 0.0
    loss = store.scalars(strategy=strategy, stage="train", name="loss_support")
    assert len(loss) > 0 and loss["value"].notna().all()
    assert set(out["metrics"]["modality"]) == {"audio", "visual", "fused"}
