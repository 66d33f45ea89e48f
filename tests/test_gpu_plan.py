"""The GPU plan of the dry run: FLOPs per step, epoch time and GPU-hours per strategy against a hand
computation, and the loader workers from a measured loader rate."""
from cometa.config import load_config
from cometa.pipeline.gpu_plan import LoaderRate, loader_workers, measure_loader, strategy_plans


def test_plan_follows_flops_batch_and_epochs():
    cfg = load_config("paper")  # batch 128, 20 rounds x 10 epochs
    plans = {p.strategy: p for p in strategy_plans(cfg, 1000, 2e9, 3e9, {"baseline": 3.0, "cometa": 9.0},
                                                   flops_per_s=1e12)}
    base, cometa = plans["baseline"], plans["cometa"]
    assert base.flops_per_step == 128 * 3 * 5e9 and cometa.flops_per_step == 128 * 9 * 5e9
    assert base.steps_per_epoch == 8  # ceil(1000 / 128)
    assert base.epoch_s == 8 * 128 * 3 * 5e9 / 1e12  # 15.36 s
    assert base.gpu_hours == 200 * base.epoch_s / 3600
    assert plans["coteaching_plus"].flops_per_step == base.flops_per_step  # not in passes: 3
    assert base.samples_per_s == 128 / (128 * 3 * 5e9 / 1e12)


def test_loader_workers_round_up():
    rate = LoaderRate(1, 1, 1, 1, 1, 1, sample_ms=20.0, n=4, frames=3)  # 50 samples/s per core
    assert rate.samples_per_s == 50.0
    assert loader_workers(50.0, rate) == 1 and loader_workers(50.1, rate) == 2 and loader_workers(1.0, rate) == 1
    assert loader_workers(1000.0, rate) == 20


def test_loader_is_measured_on_real_files(tmp_path):
    from cometa.data.synthetic import build_corpus

    cfg = load_config("tiny")
    root = build_corpus(cfg.corpus.synthetic, progress=False)
    rate = measure_loader(cfg, root / "train", n=4)
    assert rate.n == 4 and rate.frames >= 1
    parts = (rate.wav_read_ms, rate.crop_augment_ms, rate.jpeg_decode_ms, rate.all_frames_ms, rate.fbank_ms)
    # every part was timed (the times themselves depend on the machine and its load: not compared)
    assert all(x > 0 for x in parts) and rate.sample_ms > 0
