"""The work of each pipeline step, called from its notebook (the notebooks stay thin).

| step                    | notebook                 | writes                                              |
|-------------------------|--------------------------|-----------------------------------------------------|
| corpus                  | 00_corpus.ipynb          | the embedded corpus (cached), counts in the store    |
| stage1                  | 10_stage1.ipynb          | checkpoint, embeddings of every utterance, EER      |
| <strategy>/round_<r>    | 20_round.ipynb           | labels, embeddings, checkpoints, scores, metrics    |
| <strategy>/projections  | 30_projections.ipynb     | projection.parquet in every round directory         |
| report                  | 90_report.ipynb          | tables and figures                                   |

Every function takes the run directory and reads the resolved config from it, so a notebook
needs nothing but plain-scalar parameters.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cometa.config import Config, load_run_config
from cometa.core.ensemble import joint_embeddings, make_round_labels
from cometa.core.label_quality import label_metrics
from cometa.core.projections import project_round, projection_labels
from cometa.core.pseudo_labels import clustering_backend
from cometa.data.corpus import Corpus, describe_corpus, open_corpus
from cometa.data.datasets import AudioBank, FrameBank
from cometa.data.synthetic import build_corpus, default_root
from cometa.data.voxceleb import load_audio, load_frames
from cometa.evaluation.evaluate import evaluate_embeddings, log_metrics
from cometa.models.adapters import is_adapter_parameter
from cometa.models.augment import build_eval_transform
from cometa.models.build import build_audio_model, build_visual_model, resolve_device
from cometa.models.distributed import barrier, is_distributed, is_main
from cometa.models.features import LogMel
from cometa.pipeline.ddp import launch
from cometa.runs import RunStore
from cometa.train.checkpoint import load_checkpoint, save_checkpoint
from cometa.train.embed import audio_embeddings, sharded, visual_embeddings
from cometa.train.stage1 import train_stage1
from cometa.train.stage2 import train_round

__all__ = ["set_threads", "corpus_root", "load_corpus", "corpus_step", "corpus_example", "stage1_step", "round_step",
           "projections_step", "round_dir", "RunContext"]


def set_threads(threads: int) -> None:
    """Threads for torch and faiss in this kernel (0 = their defaults). The orchestrator gives each of
    several concurrent steps its share of the cores."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
        faiss.omp_set_num_threads(int(threads))


def round_dir(run_dir: str | Path, strategy: str, round_: int) -> Path:
    return Path(run_dir) / strategy / f"round_{round_}"


def corpus_root(cfg: Config) -> Path:
    """Where the run's corpus lives: ``corpus.root``, or the cache dir of the embedded generator."""
    if cfg.corpus.root:
        return Path(cfg.corpus.root).expanduser()
    if cfg.corpus.kind == "synthetic":
        return default_root(cfg.corpus.synthetic)
    raise ValueError("corpus.root must name the VoxCeleb directory (see README: 'Preparing VoxCeleb')")


def load_corpus(cfg: Config) -> Corpus:
    return open_corpus(corpus_root(cfg), trial_lists=cfg.eval.trial_lists, missing_faces=cfg.corpus.missing_faces)


class RunContext:
    """Config, store, corpus and (lazily) the in-memory audio/face banks of one run."""

    def __init__(self, run_dir: str | Path, *, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.cfg = load_run_config(self.run_dir / "config.yaml")
        self.store = RunStore(self.run_dir)
        self.progress = progress
        self.device = resolve_device(self.cfg.device)
        self.corpus = load_corpus(self.cfg)
        self._banks: dict[str, Any] = {}

    def audio_bank(self, split: str) -> AudioBank:
        key = f"audio_{split}"
        if key not in self._banks:
            self._banks[key] = AudioBank(getattr(self.corpus, split), sample_rate=self.cfg.features.sample_rate,
                                         cache=self.cfg.cache_data)
        return self._banks[key]

    def frame_bank(self, split: str) -> FrameBank:
        key = f"frames_{split}"
        if key not in self._banks:
            self._banks[key] = FrameBank(getattr(self.corpus, split), size=self.cfg.visual_encoder.image_size,
                                         cache=self.cfg.cache_data)
        return self._banks[key]

    def audio_embeddings(self, model, split: str) -> np.ndarray:
        """(N, D) of every utterance of the split (sharded over DDP ranks and gathered)."""
        return sharded(audio_embeddings, model, self.audio_bank(split), device=self.device,
                       sample_rate=self.cfg.features.sample_rate, eval_seconds=self.cfg.features.eval_seconds,
                       progress=self.progress, desc=f"audio embeddings ({split})")

    def visual_embeddings(self, model, split: str) -> np.ndarray:
        tf = build_eval_transform(self.cfg.visual_encoder.image_size)
        return sharded(lambda m, b, **kw: visual_embeddings(m, b, tf, **kw), model, self.frame_bank(split),
                       device=self.device, progress=self.progress, desc=f"face embeddings ({split})")

    def evaluate(self, embeddings: dict[str, np.ndarray], *, strategy: str | None, round_: int,
                 out_dir: Path) -> pd.DataFrame:
        """Score the trial lists, log the metrics, keep the scores for DET curves."""
        keys = self.corpus.test["key"].tolist()
        metrics, scores = evaluate_embeddings(keys, embeddings, self.corpus.trials, p_targets=self.cfg.eval.p_targets)
        self.store.delete_scalars(strategy=strategy, stage=[f"eval/{n}" for n in self.corpus.trials], round=round_,
                                  name=sorted(set(metrics["name"])))
        log_metrics(self.store, metrics, strategy=strategy, round=round_)
        self.store.save_array(out_dir.relative_to(self.run_dir) / "scores.npz", **scores)
        return metrics


# ---------------------------------------------------------------------------------------------


def corpus_step(run_dir: str | Path, *, progress: bool = True) -> dict:
    """Build (or find in the cache) the embedded corpus, open it, record its counts."""
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    if cfg.corpus.kind == "synthetic" and not cfg.corpus.root:
        build_corpus(cfg.corpus.synthetic, progress=progress)
    corpus = load_corpus(cfg)
    counts = describe_corpus(corpus)
    store = RunStore(run_dir)
    store.save_json("corpus/counts.json", {"root": str(corpus.root), **counts})
    return counts


def corpus_example(run_dir: str | Path) -> dict:
    """The first training utterance, for a look at the data (:func:`cometa.results.figures.corpus_sample`):
    ``key``, ``spec`` its log-mel spectrogram (n_mels, T), ``frames`` its face frames (F, H, W, 3) or None."""
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    row = load_corpus(cfg).train.iloc[0]
    wave = load_audio(row["audio_path"])
    spec = LogMel.from_config(cfg.features)(torch.from_numpy(wave)[None])[0].numpy()
    frames = load_frames(list(row["frame_paths"]), size=cfg.visual_encoder.image_size) if row["n_frames"] else None
    return {"key": row["key"], "spec": spec, "frames": frames}


def _launch_if_ddp(run_dir, step: str, **kw) -> bool:
    """With ``nproc_per_node > 1`` (and not already inside torchrun) run the step under torchrun."""
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    if cfg.nproc_per_node <= 1 or is_distributed():
        return False
    launch(step, run_dir, nproc=cfg.nproc_per_node, **kw)
    return True


def _stored_metrics(store: RunStore, strategy: str | None, round_: int) -> pd.DataFrame:
    """The evaluation metrics of a step, read back from the store (after a torchrun launch)."""
    df = store.scalars(strategy=strategy, round=round_)
    df = df[df["stage"].str.startswith("eval/")]
    return pd.DataFrame({"list": df["stage"].str[5:], "modality": df["modality"], "name": df["name"],
                         "value": df["value"]}).reset_index(drop=True)


def stage1_step(run_dir: str | Path, *, progress: bool = True, stop_after_epoch: int | None = None) -> pd.DataFrame:
    """Stage I: contrastive pretraining, then embeddings of every utterance and the audio EER."""
    if _launch_if_ddp(run_dir, "stage1", stop_after_epoch=stop_after_epoch, progress=progress):
        return _stored_metrics(RunStore(run_dir), None, 0)
    ctx = RunContext(run_dir, progress=progress)
    out = ctx.run_dir / "stage1"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "checkpoint.pt").exists():
        _log_untrained(ctx)
    model = train_stage1(ctx.cfg, ctx.corpus, ctx.store, out_dir=out, bank=ctx.audio_bank("train"),
                         progress=progress, stop_after_epoch=stop_after_epoch)
    if stop_after_epoch is not None and stop_after_epoch < ctx.cfg.stage1.epochs:
        return pd.DataFrame()
    train_emb = ctx.audio_embeddings(model, "train")
    test_emb = ctx.audio_embeddings(model, "test")
    if not is_main():
        return pd.DataFrame()
    save_checkpoint(out / "model.pt", {"audio": model.state_dict()})
    ctx.store.save_array("stage1/embeddings.npz", keys=np.array(ctx.corpus.train["key"]), audio=train_emb)
    ctx.store.save_array("stage1/test_embeddings.npz", keys=np.array(ctx.corpus.test["key"]), audio=test_emb)
    return ctx.evaluate({"audio": test_emb}, strategy=None, round_=0, out_dir=out)


def _log_untrained(ctx: RunContext) -> None:
    """The yardstick Stage I is measured against: the audio EER of the encoder as initialised
    (same seed as training), logged as ``eer_untrained`` per trial list."""
    torch.manual_seed(ctx.cfg.seed)  # train_stage1 initialises the same way
    model = build_audio_model(ctx.cfg, adapters=False).to(ctx.device)
    emb = ctx.audio_embeddings(model, "test")
    if not is_main():
        return
    metrics, _ = evaluate_embeddings(ctx.corpus.test["key"].tolist(), {"audio": emb}, ctx.corpus.trials, p_targets=[])
    ctx.store.delete_scalars(strategy=None, stage=[f"eval/{n}" for n in ctx.corpus.trials], round=0,
                             name="eer_untrained")
    ctx.store.log_many([dict(name="eer_untrained", value=float(r.value), stage=f"eval/{r.list}", round=0,
                             modality="audio") for r in metrics.itertuples(index=False)])


def load_stage1_encoder(audio: torch.nn.Module, state: dict) -> None:
    """Stage I's weights into the audio model; an audio model with adapters (``audio_encoder.adapters``,
    inserted for Stage II) keeps its new adapters, the identity: any other missing or extra key is an
    error."""
    missing, unexpected = audio.load_state_dict(state, strict=False)
    bad = [k for k in missing if not is_adapter_parameter(k)] + list(unexpected)
    if bad:
        raise RuntimeError(f"Stage I's checkpoint does not fit the audio model: {', '.join(bad[:5])}")


def _load_encoders(ctx: RunContext, strategy: str, round_: int):
    """The encoders a round starts from: Stage I audio + a fresh visual net for round 1, else the
    previous round's final encoders; and with ``stage2.optimizer_scope: stage``, from round 2 on, the
    previous round's Adam moments (else None)."""
    cfg = ctx.cfg
    moments = None
    torch.manual_seed(cfg.seed + 17)
    audio, visual = build_audio_model(cfg), build_visual_model(cfg)
    if round_ == 1:
        stage1 = load_checkpoint(ctx.run_dir / "stage1" / "model.pt")
        if stage1 is None:
            raise FileNotFoundError(f"{ctx.run_dir / 'stage1'} has no model.pt; run Stage I first")
        load_stage1_encoder(audio, stage1["audio"])
    else:
        path = round_dir(ctx.run_dir, strategy, round_ - 1) / "checkpoint.pt"
        state = load_checkpoint(path)
        if state is None:
            raise FileNotFoundError(f"round {round_ - 1} of {strategy} has no checkpoint; run it first")
        audio.load_state_dict(state["audio"])
        visual.load_state_dict(state["visual"])
        if cfg.stage2.optimizer_scope == "stage":
            moments = state.get("moments")
            if moments is None:
                raise FileNotFoundError(f"{path} holds no Adam moments (its round ran with stage2.optimizer_scope: "
                                        f"round); stage2.optimizer_scope: stage needs them")
    return audio.to(ctx.device), visual.to(ctx.device), moments


def round_step(run_dir: str | Path, strategy: str, round_: int, *, progress: bool = True,
               stop_after_epoch: int | None = None) -> dict[str, pd.DataFrame]:
    """One Stage II round: embeddings -> clustering per view -> ensemble -> train -> evaluate."""
    if _launch_if_ddp(run_dir, "round", strategy=strategy, round_=round_, stop_after_epoch=stop_after_epoch,
                      progress=progress):
        store = RunStore(run_dir)
        return {"metrics": _stored_metrics(store, strategy, round_),
                "labels": store.scalars(strategy=strategy, stage="labels", round=round_)}
    ctx = RunContext(run_dir, progress=progress)
    cfg, store = ctx.cfg, ctx.store
    out = round_dir(ctx.run_dir, strategy, round_)
    out.mkdir(parents=True, exist_ok=True)
    rel = out.relative_to(ctx.run_dir)
    audio, visual, moments = _load_encoders(ctx, strategy, round_)

    # 1. embeddings of the training utterances (round 1: Stage I's, computed once)
    keys = ctx.corpus.train["key"].tolist()
    labels_path = out / "labels.parquet"
    resuming = labels_path.exists() and (out / "embeddings.npz").exists()  # labels of this round complete
    barrier()  # every rank has decided before rank 0 writes anything
    if not resuming:
        if is_main():
            store.delete_scalars(strategy=strategy, stage=["labels", "train"], round=round_)
        if round_ == 1:
            audio_emb = store.load_arrays("stage1/embeddings.npz", finite=True)["audio"]
        else:
            audio_emb = ctx.audio_embeddings(audio, "train")
        visual_emb = ctx.visual_embeddings(visual, "train")
    if not resuming and is_main():
        # 2. clustering per view and the ensemble (round 1: audio only)
        store.save_json(rel / "clustering_backend.json", clustering_backend(cfg.clustering))  # where k-means ran, why
        truth_emb = None  # labels of known noise that follow Stage I's confusions: the same in every round
        if cfg.clustering.method == "truth" and cfg.clustering.truth_noise_target == "audio_nearest":
            truth_emb = store.load_arrays("stage1/embeddings.npz", finite=True)["audio"]
        table, counts = make_round_labels(keys, ctx.corpus.train["speaker"].tolist(), audio_emb,
                                          None if round_ == 1 else visual_emb,
                                          clustering=cfg.clustering, seed=cfg.seed + 100 * round_,
                                          truth_seed=cfg.seed, truth_embeddings=truth_emb)
        previous = None
        if round_ > 1:
            previous = store.load_table(round_dir(ctx.run_dir, strategy, round_ - 1).relative_to(ctx.run_dir)
                                        / "labels.parquet")
        rows = [dict(r, strategy=strategy, stage="labels", round=round_) for r in label_metrics(table, previous)]
        rows += [dict(name=f"vote_{k}", value=float(v), modality="consensus", strategy=strategy, stage="labels",
                      round=round_) for k, v in counts.items()]
        store.log_many(rows)
        joint = joint_embeddings(audio_emb, visual_emb)
        store.save_array(rel / "embeddings.npz", keys=np.array(keys), audio=audio_emb, visual=visual_emb, joint=joint)
        store.save_table(rel / "labels.parquet", table)  # written last: marks the labels complete
    barrier()  # the other ranks read rank 0's labels
    if resuming or not is_main():
        table = store.load_table(rel / "labels.parquet")
        emb = store.load_arrays(rel / "embeddings.npz", finite=True)
        audio_emb, visual_emb = emb["audio"], emb["visual"]

    # 3. train both encoders with the strategy (Stage I's embeddings: the teacher of distill.teacher stage1)
    stage1_emb = None
    if cfg.stage2.distill.teacher == "stage1":
        stage1_emb = store.load_arrays("stage1/embeddings.npz")["audio"]
    a_clf, v_clf, moments = train_round(cfg, strategy, round_, audio, visual, table, ctx.audio_bank("train"),
                                        ctx.frame_bank("train"), audio_emb=audio_emb, visual_emb=visual_emb,
                                        store=store, out_dir=out, device=ctx.device, progress=progress,
                                        stop_after_epoch=stop_after_epoch, stage1_emb=stage1_emb, moments=moments)
    last = round_ * cfg.stage2.epochs_per_round
    if stop_after_epoch is not None and stop_after_epoch < last:
        return {}

    # 4. evaluate on the held-out identities
    test = {"audio": ctx.audio_embeddings(a_clf.encoder, "test"),
            "visual": ctx.visual_embeddings(v_clf.encoder, "test")}
    if not is_main():
        return {}
    encoders = {"audio": a_clf.encoder.state_dict(), "visual": v_clf.encoder.state_dict()}
    save_checkpoint(out / "checkpoint.pt", encoders if moments is None else {**encoders, "moments": moments})
    store.save_array(rel / "test_embeddings.npz", keys=np.array(ctx.corpus.test["key"]), **test)  # for AS-norm
    metrics = ctx.evaluate(test, strategy=strategy, round_=round_, out_dir=out)
    quality = store.scalars(strategy=strategy, stage="labels", round=round_)
    return {"metrics": metrics, "labels": quality}


def projections_step(run_dir: str | Path, strategies: str | list[str], rounds: int, *, progress: bool = True) -> None:
    """UMAP of each round's clustered embeddings, aligned round to round (see cometa.core.projections),
    written as ``<strategy>/round_<r>/projection.parquet`` for every strategy."""
    if isinstance(strategies, str):
        strategies = [s for s in strategies.split(",") if s]
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    store = RunStore(run_dir)
    with tqdm(total=len(strategies) * rounds, desc="projections", disable=not progress, leave=False) as bar:
        for strategy in strategies:
            prev = None
            for r in range(1, rounds + 1):
                rel = round_dir(run_dir, strategy, r).relative_to(Path(run_dir))
                emb = store.load_arrays(rel / "embeddings.npz", finite=True)
                frames = []
                t0 = time.time()
                for view in ("audio", "visual", "joint"):
                    p = project_round(None if prev is None else prev[prev["view"] == view], emb[view],
                                      list(emb["keys"]), cfg=cfg.projection, seed=cfg.seed)
                    p["view"] = view
                    frames.append(p)
                proj = pd.concat(frames, ignore_index=True)
                # the points' labels travel with them: the dashboard's slider reads 50k rows, not N
                proj = projection_labels(proj, store.load_table(rel / "labels.parquet"))
                store.save_table(rel / "projection.parquet", proj)
                store.delete_scalars(strategy=strategy, stage="projection", round=r)
                store.log("projection_seconds", time.time() - t0, strategy=strategy, stage="projection", round=r)
                prev = proj
                bar.update()
